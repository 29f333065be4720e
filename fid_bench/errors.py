"""User-facing errors: reported as one line, never as a traceback."""


class FidBenchError(Exception):
    """Bad input or configuration the user can fix; the message says how."""
