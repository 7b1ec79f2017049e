"""What a scan learns about a store, kept compact.

Memory grows with the number of digests, not of files: each sha256 digest is interned once as its 32
raw bytes and named everywhere else by a small integer id; sizes and mtimes live in flat arrays.
The scanner fills a `Store` from one thread (the scan's consumer), so nothing here locks.
"""

from __future__ import annotations

from array import array
from itertools import islice
from sys import intern as intern_str
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from .digest import Digest
from .findings import Finding
from .manifest import Manifest

NO_ID = -1


class Tag(NamedTuple):
    current: int  # blob id of the manifest, NO_ID when the current link is unusable
    mtime: float  # when the tag last moved (mtime of current/link)
    history: Tuple[int, ...]  # ids named under index/sha256/


class ManifestNode(NamedTuple):
    """A parsed manifest, references already interned. `refs` are sha256 blob ids (config, layers);
    `aliases` are references by another algorithm, resolved per repository through `_layers` links."""

    kind: str
    media_type: str
    config: int
    refs: Tuple[int, ...]
    aliases: Tuple[Digest, ...]
    children: Tuple[int, ...]
    platforms: Tuple[str, ...]
    subject: int
    foreign: Tuple[int, ...]  # refs with `urls`: missing is not damage


class Upload(NamedTuple):
    upload_id: str
    size: int
    started_at: Optional[float]  # None when startedat is missing or unreadable


class Repository:
    __slots__ = ("name", "has_layers", "has_manifests", "revisions", "tags", "layer_links", "layer_link_mtimes",
                 "aliases", "uploads")

    def __init__(self, name: str) -> None:
        self.name = name
        self.has_layers = False
        self.has_manifests = False
        self.revisions: Dict[int, float] = {}  # id -> mtime of the revision link
        self.tags: Dict[str, Tag] = {}
        # sha256 digests with a _layers link, 32 raw bytes each: most are never looked at, so they are not
        # interned (du on a large store would spend a third of its time on them)
        self.layer_links = bytearray()
        self.layer_link_mtimes = array("d")  # aligned with layer_links when the scan stat'ed them
        self.aliases: Dict[Digest, int] = {}  # sha384/sha512 digest -> sha256 id (alias links)
        self.uploads: List[Upload] = []


class Store:
    """The blobs, repositories, manifests and findings of one store."""

    def __init__(self, rootdirectory: str) -> None:
        self.rootdirectory = rootdirectory
        self._ids: Dict[bytes, int] = {}
        self._raw: List[bytes] = []
        self.sizes = array("q")
        self.mtimes = array("d")
        self.stored = bytearray()
        self.repositories: Dict[str, Repository] = {}
        self.manifests: Dict[int, ManifestNode] = {}
        self.unreadable_manifests: Dict[int, str] = {}  # id -> finding code (missing/unparseable)
        self.findings: List[Finding] = []
        self.pull_through_cache = False
        self.layer_links_checked = True  # False when the scan only listed _layers/sha256 (du, ls)
        self.detailed: Optional[set] = None  # after a light scan: repositories completed since (else all)

    # ------------------------------------------------------------------------------------------ blobs
    def intern(self, digest: Digest) -> int:
        """The id of a sha256 digest, allocating one (not stored) the first time it is seen."""
        return self.intern_raw(bytes.fromhex(digest.hex))

    def intern_raw(self, raw: bytes) -> int:
        blob_id = self._ids.get(raw)
        if blob_id is None:
            blob_id = len(self._raw)
            self._ids[raw] = blob_id
            self._raw.append(raw)
            self.sizes.append(0)
            self.mtimes.append(0.0)
            self.stored.append(0)
        return blob_id

    def lookup(self, digest: Digest) -> int:
        if digest.algorithm != "sha256":
            return NO_ID
        return self._ids.get(bytes.fromhex(digest.hex), NO_ID)

    def add_blob(self, raw: bytes, size: int, mtime: float) -> int:
        blob_id = self.intern_raw(raw)
        self.sizes[blob_id] = size
        self.mtimes[blob_id] = mtime
        self.stored[blob_id] = 1
        return blob_id

    def lookup_raw(self, raw: bytes) -> int:
        return self._ids.get(raw, NO_ID)

    def layer_links(self, repo: Repository) -> Iterator[Tuple[Digest, int, float]]:
        """(link digest, blob id or NO_ID when never seen elsewhere, link mtime or 0 when the scan only
        listed it) for each sha256 `_layers` link."""
        packed = repo.layer_links
        mtimes = repo.layer_link_mtimes
        known = len(mtimes) * 32 == len(packed)
        for n, i in enumerate(range(0, len(packed), 32)):
            raw = bytes(packed[i:i + 32])
            yield Digest.from_raw(raw), self._ids.get(raw, NO_ID), mtimes[n] if known else 0.0

    def digest(self, blob_id: int) -> Digest:
        return Digest.from_raw(self._raw[blob_id])

    def __len__(self) -> int:
        return len(self._raw)

    def stored_ids(self) -> Iterator[int]:
        stored = self.stored
        return (i for i in range(len(stored)) if stored[i])

    # ------------------------------------------------------------------------------------ repositories
    def repository(self, name: str) -> Repository:
        repo = self.repositories.get(name)
        if repo is None:
            repo = self.repositories[name] = Repository(name)
        return repo

    def add_manifest(self, blob_id: int, manifest: Manifest) -> None:
        refs = []
        aliases = []
        foreign = []
        for desc in manifest.blob_references():
            if desc.digest.algorithm == "sha256":
                ref = self.intern(desc.digest)
                refs.append(ref)
                if desc.foreign:
                    foreign.append(ref)
            else:
                aliases.append(desc.digest)
        children = []
        platforms = []
        for desc in manifest.children:
            if desc.digest.algorithm == "sha256":
                children.append(self.intern(desc.digest))
                platforms.append(intern_str(desc.platform))
            else:
                aliases.append(desc.digest)
        config = self.intern(manifest.config.digest) if (
            manifest.config and manifest.config.digest.algorithm == "sha256") else NO_ID
        subject = NO_ID
        if manifest.subject is not None and manifest.subject.digest.algorithm == "sha256":
            subject = self.intern(manifest.subject.digest)
        self.manifests[blob_id] = ManifestNode(
            manifest.kind, intern_str(manifest.media_type), config, tuple(dict.fromkeys(refs)), tuple(aliases),
            tuple(children), tuple(platforms), subject, tuple(foreign),
        )

    def add_finding(self, finding: Finding) -> None:
        self.findings.append(finding)

    # ------------------------------------------------------------------------- across processes
    def parts(self) -> Iterator[tuple]:
        """Empty this store into a sequence of small picklable pieces, its digests first (packed, no object
        per digest). A shard's store crosses from its process to the merging one piece by piece, each
        piece freed as it goes, so that neither side ever holds a second copy of all of it."""
        raws, sizes, mtimes, stored = self._raw, self.sizes, self.mtimes, self.stored
        self._ids, self._raw = {}, []
        self.sizes, self.mtimes, self.stored = array("q"), array("d"), bytearray()
        for start in range(0, len(raws), BLOB_PART):
            end = start + BLOB_PART
            packed = b"".join(raws[start:end])
            raws[start:end] = [b""] * len(raws[start:end])  # no digest object outlives its piece
            yield ("blobs", packed, sizes[start:end], mtimes[start:end], stored[start:end])
        del raws, sizes, mtimes, stored
        for kind, mapping in (("manifests", self.manifests), ("repositories", self.repositories)):
            while mapping:
                chunk = list(islice(mapping.items(), PART))
                for key, _ in chunk:
                    del mapping[key]
                yield (kind, chunk)
        yield ("rest", self.unreadable_manifests, self.findings, self.pull_through_cache)
        self.unreadable_manifests, self.findings = {}, []


PART = 4096  # manifests or repositories per piece of a store in transit
BLOB_PART = 65536  # digests per piece (2 MiB packed)


class Merging:
    """Folds the pieces of another store (`Store.parts`) into `store` as they arrive; the blobs pieces
    come first and fix how the other store's ids map to this one's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # the receiving store's own int objects, so that every tuple naming a blob shares one object
        self.remap: List[int] = []

    def id_of(self, i: int) -> int:
        return self.remap[i] if i != NO_ID else NO_ID

    def feed(self, part: tuple) -> None:
        store, remap, kind = self.store, self.remap, part[0]
        if kind == "blobs":  # the pieces of the other store's digests, in id order
            _, packed, sizes, mtimes, stored = part
            intern_raw = store.intern_raw
            mine = [intern_raw(packed[i:i + 32]) for i in range(0, len(packed), 32)]
            remap.extend(mine)
            for i, j in enumerate(mine):
                if stored[i]:
                    store.sizes[j] = sizes[i]
                    store.mtimes[j] = mtimes[i]
                    store.stored[j] = 1
        elif kind == "manifests":
            m, manifests = self.id_of, store.manifests
            for i, node in part[1]:
                if remap[i] not in manifests:
                    manifests[remap[i]] = node._replace(
                        config=m(node.config), refs=tuple(remap[r] for r in node.refs),
                        children=tuple(remap[c] for c in node.children), subject=m(node.subject),
                        foreign=tuple(remap[f] for f in node.foreign))
        elif kind == "repositories":
            m = self.id_of
            for name, repo in part[1]:
                mine = store.repository(name)
                mine.has_layers = mine.has_layers or repo.has_layers
                mine.has_manifests = mine.has_manifests or repo.has_manifests
                mine.revisions.update({remap[r]: t for r, t in repo.revisions.items()})
                mine.tags.update({t: info._replace(current=m(info.current),
                                                   history=tuple(remap[h] for h in info.history))
                                  for t, info in repo.tags.items()})
                mine.layer_links += repo.layer_links
                mine.layer_link_mtimes += repo.layer_link_mtimes
                mine.aliases.update({d: remap[t] for d, t in repo.aliases.items()})
                mine.uploads.extend(repo.uploads)
        elif kind == "rest":
            _, unreadable, findings, pull_through_cache = part
            for i, problem in unreadable.items():
                store.unreadable_manifests.setdefault(remap[i], problem)
            store.findings.extend(findings)
            store.pull_through_cache = store.pull_through_cache or pull_through_cache
        else:  # pragma: no cover - a bug, not an input problem
            raise AssertionError(f"unknown store part {kind!r}")
