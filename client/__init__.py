"""Clients of the service: the deployment check and the grading CLI.

They speak to a service over HTTP only and import nothing of it (a test walks the imports):
what they need to know of its languages and verdicts, they ask it.
"""

from .cli import COMMANDS, add_commands, run

__all__ = ["COMMANDS", "add_commands", "run"]
