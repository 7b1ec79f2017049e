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
from typing import Iterator, List, NamedTuple, Optional, Set, Tuple

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


class Locked(StorageError):
    pass


class IsSymlink(StorageError):
    """A path that is a symbolic link where a file was expected: never followed."""


class Lock(Protocol):
    def release(self) -> None: ...


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

    def remove_file(self, rel: str) -> bool:
        """Remove a file or symbolic link (never what it points to); False when already gone."""

    def remove_empty_dir(self, rel: str) -> bool:
        """Remove a directory if it is empty; False when gone or not empty."""

    def remove_tree(self, rel: str) -> None:
        """Remove a directory and everything below it, links not followed; nothing when already gone."""

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Replace a file's content all at once (write beside it, flush, rename), parents created."""

    def append(self, rel: str, data: bytes) -> None:
        """Append to a file and flush it to disk, parents created."""

    def rename(self, src_rel: str, dst_rel: str) -> bool:
        """Move a file, link or directory (links not followed) to a free path of the same filesystem, its
        missing parents created like the source's own; False when the source is already gone. Raises
        `StorageError` when the destination exists or is on another filesystem."""

    def make_dir(self, rel: str) -> None:
        """Create a directory and its missing parents (nothing when it exists)."""

    def filesystem_id(self, rel: str) -> Optional[int]:
        """Which filesystem holds the entry (a rename works only within one), or None when it is missing."""

    def lock(self, rel: str) -> Lock:
        """Hold an exclusive lock for one regprune run; raises `Locked` when another run holds it."""


def _kind_of_mode(mode: int) -> str:
    if stat_mod.S_ISDIR(mode):
        return DIR
    if stat_mod.S_ISREG(mode):
        return FILE
    if stat_mod.S_ISLNK(mode):
        return SYMLINK
    return OTHER


_MISSING = (errno.ENOENT, errno.ENOTDIR)
#: Links, manifests and configs are small: one read of this size is the whole file (a shorter read of a
#: regular file means end of file), so a second read just to see EOF is saved.
_FIRST_READ = 256 * 1024


class LocalStorage:
    """A store on a local or mounted filesystem (a NAS share over NFS/SMB looks the same)."""

    #: Safe to use from forked scan processes: it holds no open handles, only a path.
    forkable = True

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        #: directories known to be real directories all the way up (no symbolic link): `rename` creates
        #: parents below them without checking again. Any removal or move of a directory clears it.
        self._real_dirs: Set[str] = set()

    def _abs(self, rel: str) -> str:
        return self.root + "/" + rel if rel else self.root

    def describe(self, rel: str) -> str:
        return self._abs(rel)

    def list_dir(self, rel: str) -> Optional[List[Entry]]:
        path = self._abs(rel)
        out: List[Entry] = []
        new = tuple.__new__  # Entry(...) costs a Python-level call per entry; listings hold 100k+ of them
        try:
            with os.scandir(path) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):  # False for a symbolic link to a directory
                        kind = DIR
                    elif e.is_file(follow_symlinks=False):
                        kind = FILE
                    elif e.is_symlink():
                        kind = SYMLINK
                    else:
                        kind = OTHER
                    out.append(new(Entry, (e.name, kind)))
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
        return tuple.__new__(Stat, (_kind_of_mode(st.st_mode), st.st_size, st.st_mtime))

    def _open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IsSymlink(path, "is a symbolic link (not followed)") from exc
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
            data = os.read(fd, min(limit + 1, _FIRST_READ))
            if len(data) == min(limit + 1, _FIRST_READ):  # maybe more: read on (until EOF, or past limit)
                while len(data) <= limit:
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

    # ---------------------------------------------------------------------------------------- writing
    def remove_file(self, rel: str) -> bool:
        path = self._abs(rel)
        try:
            os.unlink(path)
            return True
        except OSError as exc:
            if exc.errno in _MISSING:
                return False
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def remove_empty_dir(self, rel: str) -> bool:
        path = self._abs(rel)
        self._real_dirs.discard(rel)
        try:
            os.rmdir(path)
            return True
        except OSError as exc:
            if exc.errno in _MISSING or exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def remove_tree(self, rel: str) -> None:
        if not rel:
            raise StorageError(self.root, "refusing to remove the store's root")
        st = self.stat(rel)
        if st is None:
            return
        self._real_dirs.clear()
        if st.kind != DIR:  # a symbolic link is removed itself, never followed
            self.remove_file(rel)
            return
        entries = self.list_dir(rel)
        if entries is None:
            return
        for entry in entries:
            child = rel + "/" + entry.name
            if entry.kind == DIR:
                self.remove_tree(child)
            else:
                self.remove_file(child)
        self.remove_empty_dir(rel)

    def rename(self, src_rel: str, dst_rel: str) -> bool:
        src, dst = self._abs(src_rel), self._abs(dst_rel)
        if not src_rel or not dst_rel:
            raise StorageError(self.root, "refusing to move the store's root")
        st = self.stat(src_rel)
        if st is None:
            return False
        if st.kind == DIR:
            self._real_dirs.clear()
        self._real_dir(dst_rel.rpartition("/")[0], src_rel.rpartition("/")[0])
        try:  # os.rename would replace an existing file: refuse instead (no other writer: we hold the lock)
            os.lstat(dst)
        except OSError as exc:
            if exc.errno not in _MISSING:
                raise StorageError(dst, exc.strerror or str(exc)) from exc
        else:
            raise StorageError(dst, f"already exists (moving {src_rel} there would replace it)")
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno in _MISSING and not os.path.lexists(src):
                return False
            if exc.errno == errno.EXDEV:
                raise StorageError(dst, f"on another filesystem than {src}: a move cannot be a rename") from exc
            raise StorageError(dst, exc.strerror or str(exc)) from exc
        return True

    def _real_dir(self, rel: str, like: Optional[str]) -> None:
        """Make `rel` a directory, checking that no part of it is a symbolic link; a directory it creates
        gets the mode (and, when run as root, the owner) of `like`, the source's directory of the same
        name, so that what a move recreates is what was there (a registry not running as root can write
        into it again)."""
        if not rel or rel in self._real_dirs:
            return
        head, _, name = rel.rpartition("/")
        like_head, _, like_name = like.rpartition("/") if like else ("", "", "")
        self._real_dir(head, like_head if like and like_name == name else None)
        path = self._abs(rel)
        try:
            st = os.lstat(path)
        except OSError as exc:
            if exc.errno not in _MISSING:
                raise StorageError(path, exc.strerror or str(exc)) from exc
            try:
                os.mkdir(path)
            except FileExistsError:
                pass  # another thread made it
            except OSError as exc2:
                raise StorageError(path, exc2.strerror or str(exc2)) from exc2
            else:
                self._copy_dir_owner(path, like if like and like_name == name else None)
            st = os.lstat(path)
        if not stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(path, "is not a directory (symbolic links are not followed)")
        self._real_dirs.add(rel)

    def _copy_dir_owner(self, path: str, like: Optional[str]) -> None:
        if like is None:
            return
        try:
            st = os.lstat(self._abs(like))
            if not stat_mod.S_ISDIR(st.st_mode):
                return
            os.chmod(path, stat_mod.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.lchown(path, st.st_uid, st.st_gid)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def make_dir(self, rel: str) -> None:
        self._real_dir(rel, None)

    def filesystem_id(self, rel: str) -> Optional[int]:
        path = self._abs(rel)
        try:
            return os.lstat(path).st_dev
        except OSError as exc:
            if exc.errno in _MISSING:
                return None
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def _makedirs_for(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def _write_synced(self, path: str, flags: int, data: bytes) -> None:
        """Write all of `data` (a write may be short on a network filesystem) and flush it to disk."""
        self._makedirs_for(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self._abs(rel)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            self._write_synced(tmp, os.O_TRUNC, data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def append(self, rel: str, data: bytes) -> None:
        path = self._abs(rel)
        try:
            self._write_synced(path, os.O_APPEND, data)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc

    def lock(self, rel: str) -> _FileLock:
        import fcntl

        path = self._abs(rel)
        try:
            self._makedirs_for(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise Locked(path, "another regprune run holds this lock") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return _FileLock(fd)


class _FileLock:
    """Released by the kernel too when the process dies, so a killed run never leaves a stale lock."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
