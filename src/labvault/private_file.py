"""Files for the operator's eyes only: created 0600 (whatever the umask), never through a
symbolic link, so a document naming patients or incidents is not readable by other accounts."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Literal, overload

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


@overload
def open_private(path: Path, mode: Literal["w"] = "w") -> IO[str]: ...
@overload
def open_private(path: Path, mode: Literal["wb"]) -> IO[bytes]: ...


def open_private(path: Path, mode: str = "w") -> IO[Any]:
    """Open `path` for writing, truncated, mode 0600; a symbolic link there is refused (OSError)."""
    fd = os.open(path, _FLAGS, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        if mode == "wb":
            return os.fdopen(fd, "wb")
        return os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` as with `open_private`."""
    if isinstance(content, bytes):
        with open_private(path, "wb") as f:
            f.write(content)
    else:
        with open_private(path) as f:
            f.write(content)


def publish_private(path: Path, content: str) -> None:
    """Create `path` (0600) holding `content`, whole or not at all: written to a temporary file
    beside it, flushed to the disk, then linked in place. An existing `path`, or a symbolic
    link there, is never replaced (`FileExistsError`)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


__all__ = ["open_private", "publish_private", "write_private"]
