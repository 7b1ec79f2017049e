"""The scan's tasks: what runs on worker threads.

Each task does the I/O of one small unit (list one directory, stat a batch of links, read a batch of
manifests), parses what it read, and returns a list of events: tuples the scan's consumer
(`regprune.scan`) applies to the `Store` in order, `("spawn", task, *args)` among them for the work a
listing reveals. Tasks never touch the `Store`, so they need no locks.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone
from typing import Iterable, List, Optional, Tuple

from . import layout
from . import manifest as manifest_mod
from .digest import HEX_LENGTHS, Digest, InvalidDigest, is_hex
from .findings import Finding, is_litter
from .model import Upload
from .storage import DIR, FILE, SYMLINK, Entry, IsSymlink, Storage, StorageError

BATCH = 64  # links or blobs per task: amortizes the pool's per-task cost, still many tasks in flight
LINK_LIMIT = 4096


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
