"""Opening a store: find its rootdirectory, pick the backend, scan it, build its graph."""

from __future__ import annotations

from typing import NamedTuple, Optional

from . import layout
from .errors import NoStore
from .graph import Graph
from .scan import DEFAULT_WORKERS, Progress, ScanOptions, scan
from .storage import LocalStorage, Storage


class Opened(NamedTuple):
    rootdirectory: str
    storage: Storage
    graph: Graph


def locate(path: str) -> str:
    try:
        return layout.find_rootdirectory(path)
    except layout.StoreNotFound as exc:
        raise NoStore(
            f"{exc.path}: no registry store here (looked for docker/registry/v2 with blobs/ or repositories/ "
            "in it, and for the path being docker/, docker/registry/ or docker/registry/v2/ itself)"
        ) from None


def open_store(path: str, workers: int = DEFAULT_WORKERS, progress: Optional[Progress] = None,
               read_all_links: bool = False, tag_history: bool = True, stat_layer_links: bool = True) -> Opened:
    """Scan and graph a store. The defaults see everything a deletion needs; the reports turn off
    what they do not show (tag history, the existence of each `_layers` link) to save a syscall a file."""
    root = locate(path)
    storage = LocalStorage(root)
    options = ScanOptions(workers=workers, read_all_links=read_all_links, tag_history=tag_history,
                          stat_layer_links=stat_layer_links, progress=progress)
    store = scan(storage, root, options)
    return Opened(root, storage, Graph(store))
