"""The streaming, parallel scan of a store.

On a NAS each directory listing, stat or read costs a network round trip, so the scan keeps many of them
in flight: small tasks (list one directory, stat a batch of links, read a batch of manifests) run on a
thread pool, and their results stream back to the calling thread, which folds them into a `Store` and
submits the work they reveal. Only the calling thread touches the `Store`; workers only do I/O and parsing.

System calls are spent where they tell something: a blob is one `lstat` of its `data`; a link whose path
already names its digest is one `lstat` (its size says whether its body can repeat the path) unless
`read_all_links` asks to read every body, as `check` does.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

from . import layout
from . import manifest as manifest_mod
from .digest import HEX_LENGTHS, Digest, InvalidDigest, is_hex
from .findings import Finding, is_litter
from .model import NO_ID, Store, Tag, Upload
from .storage import DIR, FILE, SYMLINK, Entry, IsSymlink, Storage, StorageError

#: Measured on a local disk and on NFS (docs/performance.md): enough requests in flight to hide
#: network latency, few enough that the GIL does not eat the gain on a warm local cache.
DEFAULT_WORKERS = 16
BATCH = 64  # links or blobs per task: amortizes the pool's per-task cost, still many tasks in flight
LINK_LIMIT = 4096

Progress = Callable[[str, int], None]


class ScanOptions(NamedTuple):
    workers: int = DEFAULT_WORKERS
    read_all_links: bool = False  # read every link body and list every link directory (check)
    tag_history: bool = True  # list tags' index/ history (deletions need it; du and ls do not)
    stat_layer_links: bool = True  # see each _layers link exists (deletions); du and ls only list them
    progress: Optional[Progress] = None
    shard: Tuple[int, int] = (0, 1)  # (i, n): this scan covers blob prefixes and repositories of share i
    processes: int = 0  # forked scan processes; 0: one per core (at most 4)


def owns(shard: Tuple[int, int], key: str) -> bool:
    """Whether a shard covers a blob prefix or repository name (a stable split, the same in every process)."""
    i, n = shard
    return n == 1 or zlib.crc32(key.encode()) % n == i


# ----------------------------------------------------------------------------------------- link bodies
def link_target(body: bytes, path: str, expected: Optional[Digest]) -> Tuple[Optional[Digest], Optional[Finding]]:
    """The sha256 digest a link names, or a finding saying why it names nothing usable."""
    if not body:
        return None, Finding("link-empty", path, "")
    try:
        text = body.decode("ascii")
        digest = Digest.parse(text)
        if digest.algorithm != "sha256":
            raise InvalidDigest("links name sha256 digests")
    except (UnicodeDecodeError, InvalidDigest):
        return None, Finding("link-malformed", path, body[:100].decode("ascii", "replace"))
    if expected is not None and digest != expected:
        return None, Finding("link-mismatch", path, str(digest), f"path names {expected}")
    return digest, None


def _io_finding(rel: str, exc: StorageError) -> Finding:
    if isinstance(exc, IsSymlink):
        return Finding("symlink", rel, rel.rsplit("/", 1)[-1])
    return Finding("unreadable", rel, exc.reason)


def _is_tmp(name: str) -> bool:
    return name.endswith(".tmp")


# ------------------------------------------------------------------------------------------ the tasks
# Each task runs on a worker and returns a list of events: tuples the consumer applies in order.

def _list(storage: Storage, rel: str, events: list) -> Optional[List[Entry]]:
    try:
        return storage.list_dir(rel)
    except StorageError as exc:
        events.append(("finding", _io_finding(rel, exc)))
        return None


def _classify_extra(directory: str, entry: Entry, events: list) -> None:
    """Report an entry the layout does not expect at this place."""
    path = layout.entry_path(directory, entry.name)
    if entry.kind == SYMLINK:
        events.append(("finding", Finding("symlink", path, entry.name)))
    elif is_litter(entry.name):
        events.append(("finding", Finding("nas-litter", path, entry.name)))
    elif _is_tmp(entry.name) and entry.kind == FILE:
        events.append(("finding", Finding("stray-temporary", path, entry.name)))
    else:
        events.append(("finding", Finding("unexpected-entry", path, entry.name)))


def task_blob_root(storage: Storage, shard: Tuple[int, int]) -> list:
    events: list = []
    if not owns(shard, ""):  # one shard reports what sits beside the prefixes
        found = _list(storage, layout.BLOBS_SHA256, [])
        return [("spawn", task_blob_prefix, e.name) for e in found or ()
                if e.kind == DIR and is_hex(e.name, 2) and owns(shard, e.name)]
    top = _list(storage, layout.BLOBS, events)
    for entry in top or ():
        if entry.name == "sha256" and entry.kind == DIR:
            continue
        _classify_extra(layout.BLOBS, entry, events)
        if entry.kind == DIR and entry.name in HEX_LENGTHS:
            events.append(("finding", Finding("blob-outside-layout", layout.entry_path(layout.BLOBS, entry.name),
                                              entry.name, "blobs are only stored under sha256")))
    entries = _list(storage, layout.BLOBS_SHA256, events)
    for entry in entries or ():
        if entry.kind == DIR and is_hex(entry.name, 2):
            if owns(shard, entry.name):
                events.append(("spawn", task_blob_prefix, entry.name))
        elif entry.kind == DIR and not is_litter(entry.name):
            events.append(("finding", Finding("blob-outside-layout",
                                              layout.entry_path(layout.BLOBS_SHA256, entry.name), entry.name)))
        else:
            _classify_extra(layout.BLOBS_SHA256, entry, events)
    return events


def task_blob_prefix(storage: Storage, prefix: str) -> list:
    events: list = []
    directory = layout.BlobPrefix(prefix).path()
    entries = _list(storage, directory, events)
    batch: List[str] = []
    for entry in entries or ():
        if entry.kind == DIR and len(entry.name) == 64 and entry.name.startswith(prefix):
            batch.append(entry.name)  # validated where its path is made
            if len(batch) == BATCH:
                events.append(("spawn", task_blob_stats, batch))
                batch = []
        elif entry.kind == DIR and not is_litter(entry.name):
            events.append(("finding", Finding("blob-outside-layout", layout.entry_path(directory, entry.name),
                                              entry.name)))
        else:
            _classify_extra(directory, entry, events)
    if batch:
        events.append(("spawn", task_blob_stats, batch))
    return events


def task_blob_stats(storage: Storage, hexes: List[str], read_all: bool) -> list:
    events: list = []
    found = []
    for hex_ in hexes:
        if read_all:  # check: what else sits in the blob's directory (NAS litter, stray files)
            blob_dir = layout.parent(layout.blob_data_hex(hex_)) if is_hex(hex_, 64) else ""
            for entry in (_list(storage, blob_dir, events) or ()) if blob_dir else ():
                if entry.name != "data":
                    _classify_extra(blob_dir, entry, events)
        try:
            rel = layout.blob_data_hex(hex_)
        except InvalidDigest:
            directory = layout.BlobPrefix(hex_[:2]).path()
            events.append(("finding", Finding("blob-outside-layout", layout.entry_path(directory, hex_), hex_)))
            continue
        try:
            st = storage.stat(rel)
        except StorageError as exc:
            events.append(("finding", _io_finding(rel, exc)))
            continue
        if st is not None and st.kind == FILE:
            found.append((bytes.fromhex(hex_), st.size, st.mtime))
            continue
        if st is not None:
            code = "symlink" if st.kind == SYMLINK else "blob-outside-layout"
            events.append(("finding", Finding(code, rel, "sha256:" + hex_)))
            continue
        # No data: the registry leaves empty directories behind; anything else in there is odd.
        blob_dir = layout.parent(rel)
        for entry in _list(storage, blob_dir, events) or ():
            if entry.kind == DIR and not is_litter(entry.name):
                events.append(("finding", Finding("blob-outside-layout", layout.entry_path(blob_dir, entry.name),
                                                  entry.name)))
            else:
                _classify_extra(blob_dir, entry, events)
    events.append(("blobs", found))
    return events


def task_repo_dir(storage: Storage, name: str, shard: Tuple[int, int]) -> list:
    """List one directory of the repository tree; a directory with `_layers` or `_manifests` is a
    repository, and any directory may also hold nested ones. Every shard walks the whole tree (names
    only); only the shard owning a directory reports on it and scans its repository."""
    events: list = []
    directory = layout.RepoDir(name).path()
    entries = _list(storage, directory, events)
    if entries is None:
        return events
    if not owns(shard, name):
        return [("spawn", task_repo_dir, layout.join_repo_name(name, e.name)) for e in entries
                if e.kind == DIR and not e.name.startswith("_") and not is_litter(e.name)
                and (layout.is_path_component(e.name) or (not name and layout.is_domain_component(e.name)))]
    reserved = {}
    for entry in entries:
        if entry.kind == SYMLINK:
            events.append(("finding", Finding("symlink", layout.entry_path(directory, entry.name), entry.name)))
        elif entry.name in ("_layers", "_manifests", "_uploads") and entry.kind == DIR and name:
            reserved[entry.name] = True
        elif entry.kind == DIR and not entry.name.startswith("_") and not is_litter(entry.name):
            if layout.is_path_component(entry.name) or (not name and layout.is_domain_component(entry.name)):
                events.append(("spawn", task_repo_dir, layout.join_repo_name(name, entry.name)))
            else:
                events.append(("finding", Finding("invalid-repository-name",
                                                  layout.entry_path(directory, entry.name),
                                                  layout.join_repo_name(name, entry.name))))
        else:
            _classify_extra(directory, entry, events)
    if not reserved:
        return events
    if not layout.valid_repository_name(name):
        events.append(("finding", Finding("invalid-repository-name", directory, name)))
        return events
    events.append(("repository", name, "_layers" in reserved, "_manifests" in reserved))
    if "_manifests" in reserved:
        events.append(("spawn", task_manifests_dir, name))
    if "_layers" in reserved:
        events.append(("spawn", task_layers_dir, name))
    if "_uploads" in reserved:
        events.append(("spawn", task_uploads_dir, name))
    return events


def task_manifests_dir(storage: Storage, repo: str) -> list:
    events: list = []
    directory = layout.repo_subdir(repo, "_manifests")
    for entry in _list(storage, directory, events) or ():
        if entry.kind == DIR and entry.name == "revisions":
            revisions = layout.repo_subdir(repo, "_manifests", "revisions")
            for sub in _list(storage, revisions, events) or ():
                if sub.kind == DIR and sub.name == "sha256":
                    events.append(("spawn", task_revisions, repo))
                else:
                    _classify_extra(revisions, sub, events)
        elif entry.kind == DIR and entry.name == "tags":
            events.append(("spawn", task_tags_dir, repo))
        else:
            _classify_extra(directory, entry, events)
    return events


def _hex_dirs(storage: Storage, directory: str, algorithm: str, events: list) -> List[str]:
    """Names of the `<hex>/` directories of a link directory, validated."""
    out = []
    length = HEX_LENGTHS[algorithm]
    for entry in _list(storage, directory, events) or ():
        if entry.kind == DIR and is_hex(entry.name, length):
            out.append(entry.name)
        else:
            _classify_extra(directory, entry, events)
    return out


def _batches(items: List, size: int = BATCH) -> Iterable[List]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def task_revisions(storage: Storage, repo: str) -> list:
    events: list = []
    hexes = _hex_dirs(storage, layout.RevisionsDir(repo).path(), "sha256", events)
    for batch in _batches(hexes):
        events.append(("spawn", task_links, "revision", repo, "sha256", batch))
    return events


def task_layers_dir(storage: Storage, repo: str, read_all: bool, stat_links: bool) -> list:
    """`_layers` links. Their presence is what du needs (their body repeats their path), so a listing
    is enough; `check` reads each one, and alias links (sha384/sha512) are always read: their body
    names the stored sha256 blob."""
    events: list = []
    directory = layout.repo_subdir(repo, "_layers")
    for entry in _list(storage, directory, events) or ():
        if entry.kind == DIR and entry.name in HEX_LENGTHS:
            hexes = _hex_dirs(storage, layout.LayersDir(repo, entry.name).path(), entry.name, events)
            if entry.name == "sha256" and not read_all and not stat_links:
                events.append(("layers", repo, bytes.fromhex("".join(hexes))))
                continue
            for batch in _batches(hexes):
                events.append(("spawn", task_links, "layer", repo, entry.name, batch))
        else:
            _classify_extra(directory, entry, events)
    return events


def read_link_at(storage: Storage, rel: str, expected: Optional[Digest], read_all: bool,
                 events: list) -> Tuple[Optional[Digest], float]:
    """The digest a link names and its mtime; (None, 0) when absent or unusable (a finding says why).

    A link whose path already names its digest and whose size is that of `sha256:<hex>` needs no read
    unless `read_all` is set; an alias link (sha384/sha512 path) always does."""
    try:
        if read_all:
            for entry in storage.list_dir(layout.parent(rel)) or ():
                if entry.name != "link":
                    _classify_extra(layout.parent(rel), entry, events)
        st = storage.stat(rel)
        if st is None:
            return None, 0.0  # an empty <hex>/ directory: the registry's way of deleting
        if st.kind != FILE:
            code = "symlink" if st.kind == SYMLINK else "unexpected-entry"
            events.append(("finding", Finding(code, rel, "link")))
            return None, 0.0
        trusted = expected is not None and expected.algorithm == "sha256"
        if trusted and st.size == layout.LINK_SIZE and not read_all:
            return expected, st.mtime
        if st.size == 0:
            events.append(("finding", Finding("link-empty", rel, "")))
            return None, st.mtime
        body = storage.read_small(rel, LINK_LIMIT)
    except StorageError as exc:
        events.append(("finding", _io_finding(rel, exc)))
        return None, 0.0
    if body is None:
        return None, 0.0
    if expected is not None and expected.algorithm != "sha256":
        target, finding = link_target(body, rel, None)
    else:
        target, finding = link_target(body, rel, expected)
    if finding is not None:
        events.append(("finding", finding))
    return target, st.mtime


def task_links(storage: Storage, kind: str, repo: str, algorithm: str, hexes: List[str], read_all: bool) -> list:
    events: list = []
    base = layout.RevisionsDir(repo).path() if kind == "revision" else layout.LayersDir(repo, algorithm).path()
    length = HEX_LENGTHS[algorithm]
    found = []
    packed = bytearray()
    mtimes = []
    for hex_ in hexes:
        digest = Digest(algorithm, hex_)
        target, mtime = read_link_at(storage, layout.link_in(base, hex_, length), digest, read_all, events)
        if target is None:
            continue
        if kind == "revision":
            found.append((target, mtime))
        elif algorithm == "sha256":
            packed += bytes.fromhex(target.hex)
            mtimes.append(mtime)
        else:
            events.append(("alias", repo, digest, target))
    if found:
        events.append(("revisions", repo, found))
    if packed:
        events.append(("layers", repo, bytes(packed), mtimes))
    return events


def task_tags_dir(storage: Storage, repo: str) -> list:
    events: list = []
    directory = layout.TagsDir(repo).path()
    tags = []
    for entry in _list(storage, directory, events) or ():
        if entry.kind == DIR and layout.valid_tag(entry.name):
            tags.append(entry.name)
        else:
            _classify_extra(directory, entry, events)
    for batch in _batches(tags, 16):
        events.append(("spawn", task_tags, repo, batch))
    return events


def task_tags(storage: Storage, repo: str, tags: List[str], read_all: bool, tag_history: bool) -> list:
    events: list = []
    for tag in tags:
        rel = layout.TagCurrentLink(repo, tag).path()
        if read_all:
            for entry in _list(storage, layout.parent(rel), events) or ():
                if entry.name != "link":
                    _classify_extra(layout.parent(rel), entry, events)
        current: Optional[Digest] = None
        mtime = 0.0
        try:
            found = storage.read_small_stat(rel, LINK_LIMIT)
        except StorageError as exc:
            events.append(("finding", _io_finding(rel, exc)))
            found = None
        if found is None:
            events.append(("finding", Finding("tag-no-current", rel, tag)))
        else:
            body, st = found
            mtime = st.mtime
            current, finding = link_target(body, rel, None)
            if finding is not None:
                events.append(("finding", finding))
        history = []
        if tag_history or read_all:
            index_dir = layout.TagIndexDir(repo, tag).path()
            for hex_ in _hex_dirs(storage, index_dir, "sha256", events):
                digest = Digest("sha256", hex_)
                if read_all:
                    target, _ = read_link_at(storage, layout.link_in(index_dir, hex_), digest, True, events)
                    if target is None:
                        continue
                history.append(digest)
        events.append(("tag", repo, tag, current, mtime, history))
    return events


def parse_startedat(body: bytes) -> Optional[float]:
    try:
        text = body.decode("ascii").strip()
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (UnicodeDecodeError, ValueError):
        try:  # 2.8 writes RFC 3339 with fractional seconds on some builds
            when = datetime.fromisoformat(body.decode("ascii").strip().replace("Z", "+00:00"))
        except (UnicodeDecodeError, ValueError):
            return None
    return when.timestamp()


def task_uploads_dir(storage: Storage, repo: str) -> list:
    events: list = []
    directory = layout.UploadsDir(repo).path()
    for entry in _list(storage, directory, events) or ():
        if entry.kind != DIR or not layout.valid_upload_id(entry.name):
            _classify_extra(directory, entry, events)
            continue
        upload_id = entry.name
        started_rel = layout.UploadStartedAt(repo, upload_id).path()
        data_rel = layout.UploadData(repo, upload_id).path()
        started = None
        size = 0
        try:
            body = storage.read_small(started_rel, LINK_LIMIT)
            started = parse_startedat(body) if body is not None else None
            st = storage.stat(data_rel)
            size = st.size if st is not None and st.kind == FILE else 0
        except StorageError as exc:
            events.append(("finding", _io_finding(started_rel, exc)))
        if started is None:
            events.append(("finding", Finding("upload-no-startedat", started_rel, upload_id)))
        events.append(("upload", repo, Upload(upload_id, size, started)))
    return events


def task_manifests(storage: Storage, digests: List[Digest]) -> list:
    events: list = []
    for digest in digests:
        rel = layout.BlobData(digest).path()
        try:
            data = storage.read_small(rel, manifest_mod.MAX_MANIFEST_SIZE)
        except IsSymlink as exc:
            events.append(("finding", _io_finding(rel, exc)))
            continue
        except StorageError as exc:
            events.append(("manifest-error", digest, "manifest-unparseable", exc.reason))
            continue
        if data is None:
            events.append(("manifest-error", digest, "revision-blob-missing", ""))
            continue
        try:
            events.append(("manifest", digest, manifest_mod.parse(data)))
        except manifest_mod.ManifestError as exc:
            events.append(("manifest-error", digest, "manifest-unparseable", str(exc)))
    return events


# --------------------------------------------------------------------------------------- the consumer
class _Scan:
    def __init__(self, storage: Storage, store: Store, options: ScanOptions) -> None:
        self.storage = storage
        self.store = store
        self.options = options
        self.done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.pending = 0
        self.requested: set = set()  # manifest ids whose read is submitted
        self.to_read: List[Digest] = []
        self.pool: Optional[ThreadPoolExecutor] = None

    def submit(self, fn: Callable, *args) -> None:
        assert self.pool is not None
        if fn is task_layers_dir:
            args = args + (self.options.read_all_links, self.options.stat_layer_links)
        elif fn in (task_links, task_blob_stats):
            args = args + (self.options.read_all_links,)
        elif fn in (task_blob_root, task_repo_dir):
            args = args + (self.options.shard,)
        elif fn is task_tags:
            args = args + (self.options.read_all_links, self.options.tag_history)
        future = self.pool.submit(fn, self.storage, *args)
        self.pending += 1
        future.add_done_callback(self.done.put)

    def progress(self, what: str, n: int) -> None:
        if self.options.progress is not None and n:
            self.options.progress(what, n)

    def run(self) -> Store:
        with ThreadPoolExecutor(max_workers=max(1, self.options.workers),
                                thread_name_prefix="regprune-scan") as pool:
            self.pool = pool
            self.submit(task_blob_root)
            self.submit(task_repo_dir, "")
            while self.pending:
                future = self.done.get()
                self.pending -= 1
                self.apply(future.result())
                if self.to_read and (len(self.to_read) >= BATCH or self.pending < self.options.workers):
                    self.submit(task_manifests, self.to_read)
                    self.to_read = []
                if not self.pending and self.to_read:
                    self.submit(task_manifests, self.to_read)
                    self.to_read = []
        return self.store

    def want_manifest(self, digest: Digest, blob_id: int) -> None:
        if blob_id not in self.requested:
            self.requested.add(blob_id)
            self.to_read.append(digest)

    def apply(self, events: list) -> None:
        store = self.store
        blobs = 0
        for event in events:
            kind = event[0]
            if kind == "blobs":
                add_blob = store.add_blob
                for raw, size, mtime in event[1]:
                    add_blob(raw, size, mtime)
                blobs += len(event[1])
            elif kind == "spawn":
                self.submit(event[1], *event[2:])
            elif kind == "layers":
                repo = store.repository(event[1])
                repo.layer_links += event[2]
                if len(event) > 3:
                    repo.layer_link_mtimes.extend(event[3])
            elif kind == "alias":
                _, repo, digest, target = event
                store.repository(repo).aliases[digest] = store.intern(target)
            elif kind == "revisions":
                revisions = store.repository(event[1]).revisions
                for target, mtime in event[2]:
                    blob_id = store.intern(target)
                    revisions[blob_id] = mtime
                    self.want_manifest(target, blob_id)
            elif kind == "tag":
                _, repo, tag, current, mtime, history = event
                current_id = store.intern(current) if current is not None else NO_ID
                store.repository(repo).tags[tag] = Tag(current_id, mtime,
                                                      tuple(store.intern(d) for d in history))
            elif kind == "manifest":
                store.add_manifest(store.intern(event[1]), event[2])
            elif kind == "manifest-error":
                _, digest, code, detail = event
                store.unreadable_manifests[store.intern(digest)] = code + ("\t" + detail if detail else "")
            elif kind == "upload":
                store.repository(event[1]).uploads.append(event[2])
            elif kind == "repository":
                _, name, has_layers, has_manifests = event
                repo = store.repository(name)
                repo.has_layers = has_layers
                repo.has_manifests = has_manifests
                self.progress("repositories", 1)
            elif kind == "finding":
                store.add_finding(event[1])
            else:  # pragma: no cover - a bug, not an input problem
                raise AssertionError(f"unknown scan event {kind!r}")
        self.progress("blobs", blobs)


def _scan_shard(storage: Storage, rootdirectory: str, options: ScanOptions, conn, counter) -> None:
    """A forked worker process: scan one shard, send the `Store` back, and leave."""
    def progress(what: str, n: int) -> None:
        if what == "blobs":
            with counter.get_lock():
                counter.value += n

    try:
        result: object = _Scan(storage, Store(rootdirectory), options._replace(progress=progress)).run()
    except BaseException as exc:  # noqa: B036 - handed to the parent, which raises it
        result = exc
    try:
        conn.send_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        conn.close()


def _scan_processes(storage: Storage, rootdirectory: str, options: ScanOptions, processes: int) -> Store:
    """Split the scan over forked processes: Python spends a few microseconds of CPU per file, so
    one process cannot keep up with a warm cache, and on a NAS more requests are in flight."""
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    per_process = options._replace(workers=max(2, options.workers // processes))
    children = []
    for i in range(1, processes):  # shard 0 is this process's own, scanned while the others run
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_scan_shard, name=f"regprune-scan-{i}",
                           args=(storage, rootdirectory, per_process._replace(shard=(i, processes)), send, counter))
        proc.start()
        send.close()
        children.append((proc, receive))
    results: dict = {}
    reported = 0
    try:
        results[0] = _Scan(storage, Store(rootdirectory), per_process._replace(shard=(0, processes))).run()
        waiting = {conn: i for i, (_, conn) in enumerate(children, start=1)}
        while waiting:
            for conn in multiprocessing.connection.wait(list(waiting), timeout=0.2):
                i = waiting.pop(conn)  # type: ignore[call-overload]
                try:
                    results[i] = pickle.loads(conn.recv_bytes())
                except EOFError:
                    results[i] = RuntimeError(f"scan process {i} died without a result")
            if options.progress is not None:
                now = counter.value
                options.progress("blobs", now - reported)
                reported = now
    finally:
        for proc, conn in children:
            conn.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    for i in range(processes):
        if isinstance(results[i], BaseException):
            raise results[i]
    store = results[0]
    for i in range(1, processes):
        store.merge(results[i])
    return store


def default_processes() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def scan(storage: Storage, rootdirectory: str, options: ScanOptions = ScanOptions()) -> Store:
    """Scan the store behind `storage` into a `Store`, findings included (not yet cross-checked:
    `regprune.graph.Graph` checks references once everything is known)."""
    processes = options.processes or default_processes()
    if processes > 1 and getattr(storage, "forkable", False) and hasattr(os, "fork"):
        store = _scan_processes(storage, rootdirectory, options, processes)
    else:
        store = _Scan(storage, Store(rootdirectory), options).run()
    store.layer_links_checked = options.read_all_links or options.stat_layer_links
    try:
        store.pull_through_cache = storage.stat(layout.SCHEDULER_STATE) is not None
    except StorageError as exc:
        store.add_finding(Finding("unreadable", layout.SCHEDULER_STATE, exc.reason))
    if store.pull_through_cache:
        store.add_finding(Finding("pull-through-cache", layout.SCHEDULER_STATE, "scheduler-state.json"))
    return store
