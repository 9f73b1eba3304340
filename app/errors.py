"""Errors of the application core that the command line prints without a traceback."""


class CliError(Exception):
    """An error the user can act on; printed as `error: ...`, exit code 2."""
