"""`check --verify-digests`: hash every stored blob and compare sizes with what descriptors declare.

Blobs are hashed on a thread pool (hashlib releases the GIL on large buffers, so threads use every
core), each streamed in fixed-size chunks: memory per worker stays constant however large a blob is.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

from . import layout
from . import manifest as manifest_mod
from .findings import Finding
from .graph import Graph
from .storage import Storage, StorageError

CHUNK = 1024 * 1024


def _hash_one(storage: Storage, graph: Graph, blob_id: int) -> Tuple[List[Finding], int]:
    store = graph.store
    digest = store.digest(blob_id)
    rel = layout.BlobData(digest).path()
    h = hashlib.sha256()
    is_manifest = blob_id in store.manifests
    kept = bytearray() if is_manifest else None
    size = 0
    try:
        for chunk in storage.read_chunks(rel, CHUNK):
            h.update(chunk)
            size += len(chunk)
            if kept is not None and len(kept) <= manifest_mod.MAX_MANIFEST_SIZE:
                kept += chunk
    except StorageError as exc:
        return [Finding("unreadable", rel, exc.reason)], size
    findings = []
    if h.hexdigest() != digest.hex:
        findings.append(Finding("blob-digest-mismatch", rel, str(digest), f"content hashes to sha256:{h.hexdigest()}"))
    elif kept is not None:
        findings.extend(_declared_sizes(graph, rel, bytes(kept)))
    return findings, size


def _declared_sizes(graph: Graph, rel: str, data: bytes) -> List[Finding]:
    store = graph.store
    try:
        parsed = manifest_mod.parse(data)
    except manifest_mod.ManifestError:
        return []  # already a finding of the scan
    out = []
    for desc in parsed.blob_references() + parsed.children:
        blob_id = store.lookup(desc.digest)
        if blob_id < 0 or not store.stored[blob_id] or desc.size < 0:
            continue
        if store.sizes[blob_id] != desc.size:
            out.append(Finding("blob-size-mismatch", layout.BlobData(desc.digest).path(), str(desc.digest),
                               f"stored {store.sizes[blob_id]} bytes, {rel} declares {desc.size}"))
    return out


def verify_blobs(storage: Storage, graph: Graph, workers: int,
                 progress: Optional[Callable[[str, int], None]] = None) -> List[Finding]:
    findings: List[Finding] = []
    ids = list(graph.store.stored_ids())
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="regprune-verify") as pool:
        for found, size in pool.map(lambda b: _hash_one(storage, graph, b), ids, chunksize=16):
            findings.extend(found)
            if progress is not None:
                progress("bytes", size)
    return findings
