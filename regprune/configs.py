"""Reading image configs for what only they know (`created`), in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Optional

import orjson

from . import layout
from .model import Store
from .storage import Storage, StorageError

CONFIG_LIMIT = 8 * 1024 * 1024


def _created(storage: Storage, store: Store, blob_id: int) -> Optional[str]:
    try:
        data = storage.read_small(layout.BlobData(store.digest(blob_id)).path(), CONFIG_LIMIT)
        doc = orjson.loads(data) if data else None
    except (StorageError, orjson.JSONDecodeError):
        return None
    created = doc.get("created") if isinstance(doc, dict) else None
    return created if isinstance(created, str) else None


def read_created(storage: Storage, store: Store, config_ids: Iterable[int], workers: int) -> Dict[int, str]:
    """config blob id -> its `created` text, for the configs that have one."""
    wanted = sorted({c for c in config_ids if store.stored[c]})
    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda c: _created(storage, store, c), wanted)
        return {c: text for c, text in zip(wanted, found) if text}
