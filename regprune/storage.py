"""The one narrow door between regprune and the bytes of a store.

Everything regprune reads or changes goes through a `Storage`: list a directory, stat an entry, read a
small file, stream a large one, and (for deletions) remove or rename. Paths are relative, `/`-separated,
and made only by `regprune.layout`; a backend maps them to whatever it stores (a local directory here,
object keys in a future S3 backend). The graph and the planner never see a backend-specific path.

Symbolic links are never followed: they are reported as entries of kind `symlink` and go no further.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from typing import Iterator, List, NamedTuple, Optional, Tuple

try:  # Protocol is 3.8+, but keep the import cheap and explicit
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment,misc]

DIR = "dir"
FILE = "file"
SYMLINK = "symlink"
OTHER = "other"


class Entry(NamedTuple):
    name: str
    kind: str


class Stat(NamedTuple):
    kind: str
    size: int
    mtime: float


class StorageError(OSError):
    """An I/O failure on one path of the store, with that path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileTooLarge(StorageError):
    pass


class Storage(Protocol):
    """What a backend must offer. `rel` is always a path made by `regprune.layout`."""

    def describe(self, rel: str) -> str:
        """The path as a user knows it (for messages)."""

    def list_dir(self, rel: str) -> Optional[List[Entry]]:
        """Entries of a directory, or None when it does not exist."""

    def stat(self, rel: str) -> Optional[Stat]:
        """The entry itself (never followed), or None when it does not exist."""

    def read_small(self, rel: str, limit: int) -> Optional[bytes]:
        """The whole content of a regular file of at most `limit` bytes, or None when missing."""

    def read_small_stat(self, rel: str, limit: int) -> Optional[Tuple[bytes, Stat]]:
        """`read_small` and the file's own stat, from one open."""

    def read_chunks(self, rel: str, chunk_size: int) -> Iterator[bytes]:
        """The content of a regular file, streamed."""


def _kind_of_mode(mode: int) -> str:
    if stat_mod.S_ISDIR(mode):
        return DIR
    if stat_mod.S_ISREG(mode):
        return FILE
    if stat_mod.S_ISLNK(mode):
        return SYMLINK
    return OTHER


_MISSING = (errno.ENOENT, errno.ENOTDIR)


class LocalStorage:
    """A store on a local or mounted filesystem (a NAS share over NFS/SMB looks the same)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _abs(self, rel: str) -> str:
        return self.root + "/" + rel if rel else self.root

    def describe(self, rel: str) -> str:
        return self._abs(rel)

    def list_dir(self, rel: str) -> Optional[List[Entry]]:
        path = self._abs(rel)
        out: List[Entry] = []
        try:
            with os.scandir(path) as it:
                for e in it:
                    if e.is_symlink():
                        kind = SYMLINK
                    elif e.is_dir(follow_symlinks=False):
                        kind = DIR
                    elif e.is_file(follow_symlinks=False):
                        kind = FILE
                    else:
                        kind = OTHER
                    out.append(Entry(e.name, kind))
        except OSError as exc:
            if exc.errno in _MISSING:
                return None
            raise StorageError(path, exc.strerror or str(exc)) from exc
        return out

    def stat(self, rel: str) -> Optional[Stat]:
        path = self._abs(rel)
        try:
            st = os.lstat(path)
        except OSError as exc:
            if exc.errno in _MISSING:
                return None
            raise StorageError(path, exc.strerror or str(exc)) from exc
        return Stat(_kind_of_mode(st.st_mode), st.st_size, st.st_mtime)

    def _open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StorageError(path, "is a symbolic link (not followed)") from exc
            raise

    def read_small(self, rel: str, limit: int) -> Optional[bytes]:
        found = self._read(rel, limit, False)
        return None if found is None else found[0]

    def read_small_stat(self, rel: str, limit: int) -> Optional[Tuple[bytes, Stat]]:
        return self._read(rel, limit, True)

    def _read(self, rel: str, limit: int, want_stat: bool) -> Optional[Tuple[bytes, Stat]]:
        path = self._abs(rel)
        try:
            fd = self._open(path)
        except StorageError:
            raise
        except OSError as exc:
            if exc.errno in _MISSING:
                return None
            raise StorageError(path, exc.strerror or str(exc)) from exc
        try:
            st = None
            if want_stat:
                fst = os.fstat(fd)
                st = Stat(_kind_of_mode(fst.st_mode), fst.st_size, fst.st_mtime)
            data = b""
            while True:  # short reads happen on network filesystems
                more = os.read(fd, limit + 1 - len(data))
                if not more:
                    break
                data += more
                if len(data) > limit:
                    raise FileTooLarge(path, f"larger than {limit} bytes")
            return data, st  # type: ignore[return-value]
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)

    def read_chunks(self, rel: str, chunk_size: int) -> Iterator[bytes]:
        path = self._abs(rel)
        try:
            fd = self._open(path)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc
        try:
            while True:
                chunk = os.read(fd, chunk_size)
                if not chunk:
                    return
                yield chunk
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)
