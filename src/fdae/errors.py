"""User-facing errors.

Anything a user can cause (a bad path, a wrong file, a bad config value) raises
`FdaeError` with one message that names the problem and the fix; the CLI prints that
message alone instead of a traceback.
"""


class FdaeError(Exception):
    """An error caused by user input, reported without a traceback."""


def require_output_dir(path, what: str) -> None:
    """Check before any work that `path` can be (or is) a directory to write into."""
    from pathlib import Path

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise FdaeError(f"{what} {path}: {p} is a file, not a folder; choose another path")
            return


def require_output_file(path, what: str, suffixes: tuple[str, ...] = ()) -> None:
    """Check before any work that `path` names a file that can be written (its suffix
    among `suffixes` when given, not an existing folder, under a folder)."""
    from pathlib import Path

    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise FdaeError(f"{what} {path}: give a file name ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise FdaeError(f"{what} {path} is a folder; give a file name inside it")
    require_output_dir(path.parent, what)
