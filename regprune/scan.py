"""The streaming, parallel scan of a store.

On a NAS each directory listing, stat or read costs a network round trip, so the scan keeps many of them
in flight: small tasks (`regprune.scan_tasks`) run on a thread pool, and their results stream back to the
calling thread, which folds them into a `Store` and submits the work they reveal. Only the calling thread
touches the `Store`. On top of that the work is split over forked processes (one per core): Python spends
microseconds of CPU per file, which one process cannot overlap with a warm cache's fast system calls.

System calls are spent where they tell something: a blob is one `lstat` of its `data`; a link whose path
already names its digest is one `lstat` (its size says whether its body can repeat the path) unless
`read_all_links` asks to read every body, as `check` does; `du` and `ls` only list `_layers`.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import threading
import time
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, List, NamedTuple, Optional, Tuple

from . import layout
from .digest import Digest
from .findings import Finding
from .model import NO_ID, Merging, Store, Tag
from .scan_tasks import (
    BATCH,
    LINK_LIMIT,
    link_target,
    owns,
    task_blob_root,
    task_blob_stats,
    task_layers_dir,
    task_links,
    task_manifests,
    task_repo_dir,
    task_tags,
    task_tags_dir,
)
from .storage import Storage, StorageError

__all__ = ["DEFAULT_WORKERS", "LINK_LIMIT", "Progress", "ScanOptions", "link_target", "owns", "scan"]

#: The most requests in flight (split over the scan processes), reached while tasks wait on I/O.
#: Measured on the benchmark tree (docs/performance.md): a cold local disk gains little past 16.
DEFAULT_WORKERS = 16

Progress = Callable[[str, int], None]


class ScanOptions(NamedTuple):
    workers: int = DEFAULT_WORKERS
    read_all_links: bool = False  # read every link body and list every link directory (check)
    tag_history: bool = True  # list tags' index/ history (deletions need it; du and ls do not)
    stat_layer_links: bool = True  # see each _layers link exists (deletions); du and ls only list them
    progress: Optional[Progress] = None
    shard: Tuple[int, int] = (0, 1)  # (i, n): this scan covers blob prefixes and repositories of share i
    processes: int = 0  # forked scan processes; 0: one per core (at most 4)


# --------------------------------------------------------------------------------------- the consumer
#: Tasks in flight while they keep the CPU busy: with a warm cache each extra thread only contends for
#: the GIL. When tasks spend most of their time waiting (cold cache, NAS), up to `workers` are in flight.
CALM = 2
WINDOW = 32  # tasks per decision


def _timed(fn: Callable, *args) -> Tuple[list, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    events = fn(*args)
    return events, time.perf_counter() - wall, time.thread_time() - cpu


class _Scan:
    def __init__(self, storage: Storage, store: Store, options: ScanOptions) -> None:
        self.storage = storage
        self.store = store
        self.options = options
        self.done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.pending = 0  # submitted to the pool, not yet applied
        self.backlog: Deque[Tuple[Callable, tuple]] = deque()  # waiting for a free slot
        self.limit = min(CALM, max(1, options.workers))
        self.window = [0.0, 0.0, 0]  # wall, cpu, tasks since the last decision
        self.requested: set = set()  # manifest ids whose read is submitted
        self.to_read: List[Digest] = []
        self.pool: Optional[ThreadPoolExecutor] = None

    def observe(self, wall: float, cpu: float) -> None:
        """Keep few tasks in flight while they are CPU-bound, many while they mostly wait on I/O."""
        w = self.window
        w[0] += wall
        w[1] += cpu
        w[2] += 1
        if w[2] < WINDOW:
            return
        waiting = 1.0 - (w[1] / w[0] if w[0] > 0 else 1.0)
        workers = max(1, self.options.workers)
        if waiting > 0.5:
            self.limit = workers
        elif waiting < 0.25:
            self.limit = min(CALM, workers)
        self.window = [0.0, 0.0, 0]
        self.drain()

    def drain(self) -> None:
        assert self.pool is not None
        while self.backlog and self.pending < self.limit:
            fn, args = self.backlog.popleft()
            future = self.pool.submit(_timed, fn, self.storage, *args)
            self.pending += 1
            future.add_done_callback(self.done.put)

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
        self.backlog.append((fn, args))
        self.drain()

    def progress(self, what: str, n: int) -> None:
        if self.options.progress is not None and n:
            self.options.progress(what, n)

    def run(self, first: Tuple[Tuple, ...] = ((task_blob_root,), (task_repo_dir, ""))) -> Store:
        with ThreadPoolExecutor(max_workers=max(1, self.options.workers),
                                thread_name_prefix="regprune-scan") as pool:
            self.pool = pool
            for task in first:
                self.submit(*task)
            while self.pending:
                future = self.done.get()
                self.pending -= 1
                events, wall, cpu = future.result()
                self.apply(events)
                self.observe(wall, cpu)
                if self.to_read and (len(self.to_read) >= BATCH or not self.backlog):
                    self.submit(task_manifests, self.to_read)
                    self.to_read = []
                self.drain()
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
    """A forked worker process: scan one shard, send the `Store` back piece by piece, and leave."""
    def progress(what: str, n: int) -> None:
        if what == "blobs":
            with counter.get_lock():
                counter.value += n

    def send(message: tuple) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        try:
            store = _Scan(storage, Store(rootdirectory), options._replace(progress=progress)).run()
        except BaseException as exc:  # noqa: B036 - handed to the parent, which raises it
            send(("error", exc))
            return
        for part in store.parts():
            send(part)
        send(("end",))
    finally:
        conn.close()


def _receive(conn: multiprocessing.connection.Connection, into: Deque[bytes]) -> None:
    """Take a shard's pieces as soon as it sends them, so that it can leave and free its memory while
    this process still scans its own shard."""
    try:
        while True:
            into.append(conn.recv_bytes())
    except (EOFError, OSError):
        pass


def _scan_processes(storage: Storage, rootdirectory: str, options: ScanOptions, processes: int) -> Store:
    """Split the scan over forked processes: Python spends a few microseconds of CPU per file, so
    one process cannot keep up with a warm cache, and on a NAS more requests are in flight."""
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    per_process = options._replace(workers=max(2, options.workers // processes))
    forked = []
    # what this process holds at the fork stays shared with the shard processes only while nothing
    # writes to it, and the cyclic GC writes to every object it visits: frozen, it visits none of them
    gc.freeze()
    try:
        for i in range(1, processes):  # shard 0 is this process's own, scanned while the others run
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_scan_shard, name=f"regprune-scan-{i}", args=(
                storage, rootdirectory, per_process._replace(shard=(i, processes)), send, counter))
            proc.start()
            send.close()
            forked.append((proc, receive))
    finally:
        gc.unfreeze()
    children = []
    for i, (proc, receive) in enumerate(forked, start=1):  # threads only once every fork is done
        received: Deque[bytes] = deque()
        receiver = threading.Thread(target=_receive, args=(receive, received), daemon=True,
                                    name=f"regprune-receive-{i}")
        receiver.start()
        children.append((proc, receive, receiver, received))
    reported = 0
    try:
        store = _Scan(storage, Store(rootdirectory), per_process._replace(shard=(0, processes))).run()
        for _, _, receiver, _ in children:
            while receiver.is_alive():
                receiver.join(timeout=0.2)
                if options.progress is not None:
                    now = counter.value
                    options.progress("blobs", now - reported)
                    reported = now
    finally:
        for proc, conn, receiver, _ in children:
            if receiver.is_alive():  # this scan failed: the shards' results are not wanted
                proc.kill()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
            receiver.join(timeout=5)
            conn.close()
    # merged piece by piece, each dropped once folded in: a shard never sits here whole twice
    for i, (_, _, _, received) in enumerate(children, start=1):
        merging = Merging(store)
        while received:
            part = pickle.loads(received.popleft())
            if part[0] == "error":
                raise part[1]
            if part[0] == "end":
                break
            merging.feed(part)
        else:
            raise RuntimeError(f"scan process {i} died without a result")
    return store


def complete(storage: Storage, store: Store, names: Iterable[str], options: ScanOptions = ScanOptions()) -> None:
    """Add what a light scan (no tag history, `_layers` only listed) left out, for these repositories only:
    a deletion touching a few repositories needs their details, not every repository's."""
    if store.detailed is None:
        return
    todo = sorted(n for n in set(names) - store.detailed if n in store.repositories)
    if not todo:
        return
    for name in todo:
        repo = store.repositories[name]
        repo.layer_links = bytearray()  # listed names; the stat of each link replaces them
        repo.layer_link_mtimes = array("d")
    first = tuple(t for name in todo for t in ((task_layers_dir, name), (task_tags_dir, name))
                  if t[0] is not task_layers_dir or store.repositories[name].has_layers)
    detail = options._replace(tag_history=True, stat_layer_links=True, read_all_links=False, shard=(0, 1))
    _Scan(storage, store, detail).run(first)
    store.detailed.update(todo)


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
    store.detailed = None if (options.tag_history or options.read_all_links) and store.layer_links_checked else set()
    try:
        store.pull_through_cache = storage.stat(layout.SCHEDULER_STATE) is not None
    except StorageError as exc:
        store.add_finding(Finding("unreadable", layout.SCHEDULER_STATE, exc.reason))
    if store.pull_through_cache:
        store.add_finding(Finding("pull-through-cache", layout.SCHEDULER_STATE, "scheduler-state.json"))
    return store
