"""The one atomic writer of the project: a file appears complete under its name, or not at all.

Every write goes to a temporary file in the destination folder (so the final rename never crosses a
file system), is flushed and fsync'ed, then ``os.replace``'d over the destination; the folder is
fsync'ed too where the platform allows, so the rename itself survives a power cut. On any failure
the temporary file is removed and the destination keeps its previous content.

The file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the umask),
not the 0600 of ``tempfile.mkstemp``: run folders and results are shared files.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread writes files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (e.g. network mounts) refuse fsync on a folder; the data itself is synced
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` atomically through ``write(binary_file)``; returns the path.

    ``write`` streams into an open binary file (``np.savez``, ``torch.save`` and ``f.write`` all
    work); missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line ends are written as they are, on every platform)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, payload: Any, *, indent: Optional[int] = 1,
                      default: Optional[Callable[[Any], Any]] = None, allow_nan: bool = True,
                      sort_keys: bool = False) -> Path:
    """Write ``payload`` as JSON (plus a final newline) to ``path`` atomically; the options are ``json.dumps``'s.

    The text is built before the file is opened, so an object that cannot be serialised raises
    without touching ``path``.
    """
    text = json.dumps(payload, indent=indent, default=default, allow_nan=allow_nan, sort_keys=sort_keys)
    return atomic_write_text(path, text + "\n")
