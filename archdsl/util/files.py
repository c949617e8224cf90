"""Output files: written whole or not at all (atomic replacement), whatever interrupts the command."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

_writing: set[str] = set()  # temporary files write_atomically has made and not yet renamed over their target


def abandon_writes() -> None:
    """Remove the temporary files of writes still under way. The command line calls it when it is
    interrupted: the command runs on another thread (deep), which an interrupt does not stop, so a
    write it was in the middle of would otherwise leave its temporary file next to the target."""
    for tmp in list(_writing):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_atomically(path: str, text: str | bytes) -> None:
    """Write a file so that it is either replaced whole or left as it was: text as UTF-8 with
    newline line ends, bytes (an SVG or PNG from dot) as they are. A path that exists and is not a
    regular file (/dev/null, a named pipe, a terminal) is written in place: renaming over it would
    replace the device or pipe with a file."""
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "wb" if isinstance(text, bytes) else "w", **({} if isinstance(text, bytes) else
                                                                      {"encoding": "utf-8", "newline": "\n"})) as out:
            out.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".archdsl-", suffix=".tmp", dir=directory)
    _writing.add(tmp)
    try:
        f = os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _writing.discard(tmp)
