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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

from . import layout
from .digest import Digest
from .plan import BlobAction, DeletionPlan
from .scan import LINK_LIMIT, link_target
from .storage import FILE, Storage

PHASES = ("tags", "history", "manifests", "layer_links", "blobs", "uploads", "repositories")


class Outcome(NamedTuple):
    bytes_freed: int
    skipped: Tuple[Tuple[str, str], ...]  # (path, why)


def _link_names(storage: Storage, rel: str, digest: Digest) -> Optional[bool]:
    """Whether the link at `rel` names `digest`: None when it is gone."""
    body = storage.read_small(rel, LINK_LIMIT)
    if body is None:
        return None
    target, _ = link_target(body, rel, None)
    return target == digest


def _remove_link_dir(storage: Storage, link_rel: str) -> None:
    storage.remove_file(link_rel)
    storage.remove_empty_dir(layout.parent(link_rel))


class Executor:
    def __init__(self, storage: Storage, workers: int = 8,
                 on_phase: Optional[Callable[[str, int], None]] = None,
                 on_progress: Optional[Callable[[str, int], None]] = None) -> None:
        self.storage = storage
        self.workers = workers
        self.on_phase = on_phase
        self.on_progress = on_progress
        self.skipped: List[Tuple[str, str]] = []
        self.freed = 0

    def _tick(self, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(phase, 1)

    def tags(self, plan: DeletionPlan) -> None:
        for action in plan.tags:
            current = layout.TagCurrentLink(action.repo, action.tag).path()
            if action.current is not None and _link_names(self.storage, current, action.current) is False:
                self.skipped.append((current, f"tag moved since the plan (was {action.current})"))
                continue
            self.storage.remove_file(current)
            self.storage.remove_tree(layout.TagDir(action.repo, action.tag).path())
            self._tick("tags")

    def history(self, plan: DeletionPlan) -> None:
        for action in plan.history:
            _remove_link_dir(self.storage, layout.TagIndexLink(action.repo, action.tag, action.digest).path())
            self._tick("history")

    def manifests(self, plan: DeletionPlan) -> None:
        for action in plan.manifests:
            rel = layout.RevisionLink(action.repo, action.digest).path()
            if _link_names(self.storage, rel, action.digest) is False:
                self.skipped.append((rel, f"revision link no longer names {action.digest}"))
                continue
            _remove_link_dir(self.storage, rel)
            self._tick("manifests")

    def layer_links(self, plan: DeletionPlan) -> None:
        for action in plan.layer_links:
            _remove_link_dir(self.storage, layout.LayerLink(action.repo, action.digest).path())
            self._tick("layer_links")

    def _blob(self, action: BlobAction) -> Tuple[int, Optional[Tuple[str, str]]]:
        data = layout.BlobData(action.digest).path()
        st = self.storage.stat(data)
        if st is not None:
            if st.kind != FILE or st.size != action.size or abs(st.mtime - action.mtime) > 1e-3:
                return 0, (data, "blob changed since the plan")
            self.storage.remove_file(data)
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
            self.storage.remove_tree(rel)
            self._tick("uploads")

    def repositories(self, plan: DeletionPlan) -> None:
        for name in plan.repositories:
            for reserved in ("_manifests", "_layers", "_uploads"):
                self.storage.remove_tree(layout.repo_subdir(name, reserved))
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
        return Outcome(self.freed, tuple(self.skipped))


def apply_plan(storage: Storage, plan: DeletionPlan, workers: int = 8, phases_done: Sequence[str] = (),
               on_phase: Optional[Callable[[str, int], None]] = None,
               on_progress: Optional[Callable[[str, int], None]] = None) -> Outcome:
    return Executor(storage, workers, on_phase, on_progress).run(plan, phases_done)
