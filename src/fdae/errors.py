"""User-facing errors.

Anything a user can cause (a bad path, a wrong file, a bad config value) raises
`FdaeError` with one message that names the problem and the fix; the CLI prints that
message alone instead of a traceback.
"""


class FdaeError(Exception):
    """An error caused by user input, reported without a traceback."""
