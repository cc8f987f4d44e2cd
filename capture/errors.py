"""The one error type the CLI turns into a single clear line (no traceback)."""


class CaptureError(Exception):
    """A problem the user can fix: bad input, missing weights, a mismatch on resume."""
