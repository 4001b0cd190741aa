"""An existing code-interpreter client, unchanged, against the real service: LangChain's
SessionsPythonREPLTool (langchain-azure-dynamic-sessions) with the service's URL as its pool
management endpoint. It sends what it sends to Azure: POST /code/execute, /files/upload,
GET /files, GET /files/content/{name} with api-version=2024-02-02-preview and a
percent-encoded identifier, and DELETE /session when closed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import warnings
from typing import Any

from ..utils import Server, assert_nothing_left

with warnings.catch_warnings():
    # The package announces at import that its successor is langchain-azure-compute; its
    # client is still what agents in the field call the service with.
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_azure_dynamic_sessions import SessionsPythonREPLTool


def repl(server: Server) -> SessionsPythonREPLTool:
    # The service never checks tokens (the pool does): any provider will do.
    return SessionsPythonREPLTool(pool_management_endpoint=server.url,
                                  access_token_provider=lambda: "not-checked",
                                  session_id=f"langchain-{secrets.token_hex(4)}|&#;")


def run(tool: SessionsPythonREPLTool, code: str) -> dict[str, Any]:
    """What the tool hands a model: JSON with result, stdout and stderr."""
    content: dict[str, Any] = json.loads(tool.invoke(code))
    return content


def test_execute_keeps_state_between_calls(server: Server) -> None:
    tool = repl(server)
    try:
        assert run(tool, "x = 20") == {"result": "", "stdout": "", "stderr": ""}
        assert run(tool, "x + 1") == {"result": 21, "stdout": "", "stderr": ""}
        # The tool strips a leading "python" and backticks, as models write them.
        assert run(tool, "```python\nprint(x)\n{'x': [x]}\n```") == {
            "result": {"x": [20]}, "stdout": "20\n", "stderr": ""}
        failed = run(tool, "x / 0")
        assert (failed["result"], failed["stdout"]) == ("", "")
        assert failed["stderr"].endswith("ZeroDivisionError: division by zero\n")
        # The artifact is the reply's properties, unchanged.
        _content, artifact = tool._run("x")
        assert (artifact["status"], artifact["result"], artifact["executionResult"]) == (
            "Success", 20, 20)
    finally:
        tool.close()  # DELETE /session, from a thread of its own
    assert_nothing_left(server)


def test_upload_list_and_download_files(server: Server) -> None:
    payload = bytes(range(256)) + os.urandom(50_000)
    tool = repl(server)
    try:
        uploaded = tool.upload_file(data=io.BytesIO(payload), remote_file_path="data.bin")
        assert (uploaded.filename, uploaded.size_in_bytes, uploaded.full_path) == (
            "data.bin", len(payload), "/mnt/data/data.bin")
        odd = tool.upload_file(data=io.BytesIO(b"odd"), remote_file_path="/mnt/data/odd %41.txt")
        assert (odd.filename, odd.size_in_bytes) == ("odd %41.txt", 3)
        assert [(f.filename, f.size_in_bytes) for f in tool.list_files()] == [
            ("data.bin", len(payload)), ("odd %41.txt", 3)]
        assert tool.download_file(remote_file_path="data.bin").read() == payload
        assert tool.download_file(remote_file_path="/mnt/data/data.bin").read() == payload
        assert tool.download_file(remote_file_path="odd %41.txt").read() == b"odd"

        # Code sees the upload, and what code writes can be downloaded.
        digest = run(tool, "import hashlib\n"
                           "hashlib.sha256(open('data.bin', 'rb').read()).hexdigest()")
        assert digest["result"] == hashlib.sha256(payload).hexdigest()
        run(tool, "open('made.csv', 'w').write('a,b\\n1,2\\n')")
        assert [f.filename for f in tool.list_files()] == ["data.bin", "made.csv", "odd %41.txt"]
        assert tool.download_file(remote_file_path="made.csv").read() == b"a,b\n1,2\n"
    finally:
        tool.close()
    assert_nothing_left(server)
