"""Carrying out a deletion plan: the only code in regprune that removes anything.

Phases run in this order, each one harmless to interrupt because everything still referenced is still
there and only unreachable leftovers remain:

1. `tags`: tag directories (current link first). A kill here leaves fewer tags; every manifest stays.
2. `history`: history entries of removed revisions in tags that stay. Only bookkeeping goes.
3. `manifests`: revision links, an index before its children. A kill leaves unreachable revisions or
   children without their index, never an index without a child.
4. `layer_links`: `_layers` links no remaining revision of the repository needs. Nothing served needs them.
5. `blobs`: blob directories no remaining revision of any repository needs (parallel).
6. `uploads`: upload directories. Nothing references an upload.
7. `repositories`: the `_manifests`, `_layers`, `_uploads` of removed or emptied repositories (now
   holding only empty directories), then their directory when empty; never a nested repository.

Every action is idempotent ("already gone" counts as done) and re-checks the entry before acting: a tag
that moved, a revision link that names something else, or a blob whose size or mtime changed since the
plan was made is left alone and reported as skipped.

A `--trash` run (`trash_run` set) goes through the same phases, actions and checks, but moves instead of
removing: a file to `regprune/trash/<run id>/<its relative path>` (a rename: same filesystem, instant,
mtime kept), a directory a phase removes whole (a tag, an upload, a repository's reserved directories)
whole, merging into what the trash already holds of it (a tag's `current/link`, moved first). Empty
directories are still removed: moving anything back recreates them. `restore()` moves a trash run's
entries back, in the reverse order; `empty_trash()` removes a run's trash for good.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

from . import layout
from .digest import Digest
from .plan import BlobAction, DeletionPlan
from .scan import LINK_LIMIT, link_target
from .storage import DIR, FILE, Storage

PHASES = ("tags", "history", "manifests", "layer_links", "blobs", "uploads", "repositories")


class Outcome(NamedTuple):
    bytes_freed: int  # with a trash run: the bytes moved to the trash
    skipped: Tuple[Tuple[str, str], ...]  # (path, why)
    trash_run: Optional[str] = None  # the run whose trash folder holds what was moved


def _link_names(storage: Storage, rel: str, digest: Digest) -> Optional[bool]:
    """Whether the link at `rel` names `digest`: None when it is gone."""
    body = storage.read_small(rel, LINK_LIMIT)
    if body is None:
        return None
    target, _ = link_target(body, rel, None)
    return target == digest


def move_merging(storage: Storage, rel: str, src_of: Callable[[str], str], dst_of: Callable[[str], str],
                 same: Optional[Callable[[str], bool]] = None) -> None:
    """Move the entry `src_of(rel)` to `dst_of(rel)`: whole when the destination is free, else (both
    directories) entry by entry, then the emptied source directory. Nothing when the source is gone, so
    a move interrupted anywhere finishes when repeated. A file whose destination already holds the same
    content (`same(rel)`) is dropped instead."""
    src = src_of(rel)
    st = storage.stat(src)
    if st is None:
        return
    dst = storage.stat(dst_of(rel))
    if st.kind != DIR and dst is not None and same is not None and same(rel):
        storage.remove_file(src)
        return
    if st.kind != DIR or dst is None:
        storage.rename(src, dst_of(rel))  # raises when the destination is taken by a file
        return
    for entry in storage.list_dir(src) or ():
        move_merging(storage, layout.entry_path(rel, entry.name), src_of, dst_of, same)
    storage.remove_empty_dir(src)


class Executor:
    def __init__(self, storage: Storage, workers: int = 8,
                 on_phase: Optional[Callable[[str, int], None]] = None,
                 on_progress: Optional[Callable[[str, int], None]] = None, trash_run: Optional[str] = None) -> None:
        self.storage = storage
        self.workers = workers
        self.on_phase = on_phase
        self.on_progress = on_progress
        self.trash_run = trash_run
        self.skipped: List[Tuple[str, str]] = []
        self.freed = 0

    # removing for good, or moving to the trash: the only two ways an entry leaves the store
    def _to_trash(self, rel: str) -> str:
        return layout.TrashEntry(self.trash_run, rel).path()  # type: ignore[arg-type]

    def _remove_file(self, rel: str) -> None:
        if self.trash_run is None:
            self.storage.remove_file(rel)
        else:
            self.storage.rename(rel, self._to_trash(rel))

    def _remove_tree(self, rel: str) -> None:
        if self.trash_run is None:
            self.storage.remove_tree(rel)
        else:
            move_merging(self.storage, rel, lambda r: r, self._to_trash)

    def _remove_link_dir(self, link_rel: str) -> None:
        self._remove_file(link_rel)
        self.storage.remove_empty_dir(layout.parent(link_rel))

    def _tick(self, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(phase, 1)

    def tags(self, plan: DeletionPlan) -> None:
        for action in plan.tags:
            current = layout.TagCurrentLink(action.repo, action.tag).path()
            if action.current is not None and _link_names(self.storage, current, action.current) is False:
                self.skipped.append((current, f"tag moved since the plan (was {action.current})"))
                continue
            self._remove_file(current)
            self._remove_tree(layout.TagDir(action.repo, action.tag).path())
            self._tick("tags")

    def history(self, plan: DeletionPlan) -> None:
        for action in plan.history:
            self._remove_link_dir(layout.TagIndexLink(action.repo, action.tag, action.digest).path())
            self._tick("history")

    def manifests(self, plan: DeletionPlan) -> None:
        for action in plan.manifests:
            rel = layout.RevisionLink(action.repo, action.digest).path()
            if _link_names(self.storage, rel, action.digest) is False:
                self.skipped.append((rel, f"revision link no longer names {action.digest}"))
                continue
            self._remove_link_dir(rel)
            self._tick("manifests")

    def layer_links(self, plan: DeletionPlan) -> None:
        for action in plan.layer_links:
            self._remove_link_dir(layout.LayerLink(action.repo, action.digest).path())
            self._tick("layer_links")

    def _blob(self, action: BlobAction) -> Tuple[int, Optional[Tuple[str, str]]]:
        data = layout.BlobData(action.digest).path()
        st = self.storage.stat(data)
        if st is not None:
            if st.kind != FILE or st.size != action.size or abs(st.mtime - action.mtime) > 1e-3:
                return 0, (data, "blob changed since the plan")
            self._remove_file(data)
        self.storage.remove_empty_dir(layout.BlobDir(action.digest).path())
        return (action.size if st is not None else 0), None

    def blobs(self, plan: DeletionPlan) -> None:
        # Blob removals are independent of each other: keep many in flight (a NAS round trip each).
        with ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="regprune-rm") as pool:
            for freed, skipped in pool.map(self._blob, plan.blobs):
                self.freed += freed
                if skipped:
                    self.skipped.append(skipped)
                self._tick("blobs")

    def uploads(self, plan: DeletionPlan) -> None:
        for action in plan.uploads:
            rel = layout.UploadDir(action.repo, action.upload_id).path()
            if self.storage.stat(rel) is not None:
                self.freed += action.size
            self._remove_tree(rel)
            self._tick("uploads")

    def repositories(self, plan: DeletionPlan) -> None:
        for name in plan.repositories:
            for reserved in ("_manifests", "_layers", "_uploads"):
                self._remove_tree(layout.repo_subdir(name, reserved))
            # then the now-empty directories up the name, stopping at anything still in use
            parts = name.split("/")
            while parts:
                rel = layout.RepoDir("/".join(parts)).path()
                if not self.storage.remove_empty_dir(rel) and self.storage.stat(rel) is not None:
                    break  # still holds something (a nested repository, litter): stop climbing
                parts.pop()
            self._tick("repositories")

    def run(self, plan: DeletionPlan, phases_done: Sequence[str] = ()) -> Outcome:
        for phase in PHASES:
            if phase in phases_done:
                continue
            before = self.freed
            getattr(self, phase)(plan)
            if self.on_phase is not None:
                self.on_phase(phase, self.freed - before)
        return Outcome(self.freed, tuple(self.skipped), self.trash_run)


def apply_plan(storage: Storage, plan: DeletionPlan, workers: int = 8, phases_done: Sequence[str] = (),
               on_phase: Optional[Callable[[str, int], None]] = None,
               on_progress: Optional[Callable[[str, int], None]] = None, trash_run: Optional[str] = None) -> Outcome:
    """Carry out `plan`; with `trash_run`, move what it removes into that run's trash folder instead."""
    return Executor(storage, workers, on_phase, on_progress, trash_run).run(plan, phases_done)


# ------------------------------------------------------------------------------------------- the trash
def restore(storage: Storage, run_id: str, steps: Sequence[Tuple[str, Sequence[str]]], workers: int = 8,
            same: Optional[Callable[[str], bool]] = None, on_step: Optional[Callable[[str], None]] = None) -> None:
    """Move a trash run's entries back: each step's paths in order (blobs first, tags last: see
    `regprune.trash.restore_steps`), then whatever else its folder holds (the empty directories of a
    removed repository), then remove the emptied folder. Each entry moves back whole when its place is
    free, so a restore interrupted anywhere leaves the store consistent and finishes when repeated; a file
    the store holds again, identical (`same`), stays as it is there."""
    def back(rel: str) -> None:
        move_merging(storage, rel, lambda r: layout.TrashEntry(run_id, r).path(), lambda r: r, same)

    for step, paths in steps:
        if step == "blobs":  # independent of each other: many in flight, as when removing them
            with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="regprune-mv") as pool:
                list(pool.map(back, paths))
        else:
            for rel in paths:
                back(rel)
        if on_step is not None:
            on_step(step)
    back(layout.V2)
    folder = layout.TrashRun(run_id).path()
    rel = layout.parent(layout.TrashEntry(run_id, layout.V2).path())
    while len(rel) >= len(folder):  # docker/registry, docker, then the run's folder itself
        storage.remove_empty_dir(rel)
        rel = layout.parent(rel)


def empty_trash(storage: Storage, run_id: str) -> None:
    """Remove a trash run's folder for good."""
    storage.remove_tree(layout.TrashRun(run_id).path())
