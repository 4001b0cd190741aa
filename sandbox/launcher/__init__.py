"""The launcher, a program of its own: see __main__.py. Nothing is imported here, as the
launcher imports this package at every start (the service imports `protocol` from it)."""
