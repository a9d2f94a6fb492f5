"""User-facing errors.

Anything a user can cause (a bad path, a wrong file, a bad config value) raises
`FdaeError` with one message that names the problem and the fix; the CLI prints that
message alone instead of a traceback.
"""

import contextlib
import os
from pathlib import Path


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


_NO_SPACE = {"ENOSPC", "EDQUOT"}


def write_error(path, err: OSError, fix: str = "") -> FdaeError:
    """One line for an OSError met while writing `path`: what happened, where, and the fix
    (disk full, read-only filesystem, no permission), instead of a traceback."""
    import errno

    name = errno.errorcode.get(err.errno or 0, "")
    where = str(path)
    then = f"; {fix}" if fix else ""
    if name in _NO_SPACE:
        return FdaeError(f"no space left on the device holding {where} (disk or quota full); free some space "
                         f"(e.g. old runs or checkpoints) or write somewhere else{then}")
    if name == "EROFS":
        return FdaeError(f"{where} is on a read-only filesystem; choose a writable location{then}")
    if name in ("EACCES", "EPERM"):
        return FdaeError(f"no permission to write {where}; fix its permissions (or its folder's) or choose "
                         f"another location{then}")
    reason = err.strerror or type(err).__name__
    return FdaeError(f"could not write {where}: {reason}{then}")


class writing:
    """`with writing(path, fix):` turns an OSError in the block into `write_error`."""

    def __init__(self, path, fix: str = ""):
        self.path, self.fix = path, fix

    def __enter__(self) -> "writing":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if isinstance(err, OSError):
            raise write_error(self.path if self.path is not None else err.filename, err, self.fix) from None
        return False


@contextlib.contextmanager
def replacing(path, fix: str = ""):
    """`with replacing(path, fix) as tmp:` write `tmp`; on success it is renamed over
    `path` in one step, so a reader or a crash never sees half a file. The temporary file
    is removed on any failure, and a write error is one `write_error` naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path, fix):
            yield tmp
            os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def describe_os_error(err: OSError) -> str:
    """One line for an OSError nobody turned into an FdaeError (the CLI's last resort)."""
    import errno

    name = errno.errorcode.get(err.errno or 0, "")
    where = err.filename if err.filename is not None else "a file"
    if name in _NO_SPACE or name in ("EROFS", "EACCES", "EPERM"):
        return str(write_error(where, err))
    return f"{where}: {err.strerror or type(err).__name__}"
