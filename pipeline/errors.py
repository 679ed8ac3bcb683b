"""The one error type the command-line tools turn into a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input or configuration: the message says what to fix."""
