"""The trash of `--trash` runs: what each one moved out of the store, and how it goes back or goes for good.

A `--trash` run moves each entry it would remove to `regprune/trash/<run id>/<its relative path>` (see
`regprune.execute`); its journal says so (`Run.trash`). This module measures those folders, decides what
a restore moves back and in which order, and refuses a restore that would overwrite something or bring
back an image whose blobs are gone. `regprune.execute` does the moving and the removing.

Restoring is the deletion backwards, so that at every instant the registry sees only complete images:
blobs, then uploads, then `_layers` links, then revision links (children before their index), then tag
history entries, then tag directories, then whatever else the run's folder holds (the empty directories
of a removed repository).
"""

from __future__ import annotations

import calendar
import time
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import execute, journal, layout
from .errors import Refused, UsageError
from .manifest import MAX_MANIFEST_SIZE, ManifestError, parse
from .scan import LINK_LIMIT, link_target
from .storage import DIR, FILE, Storage

Steps = Tuple[Tuple[str, Tuple[str, ...]], ...]  # (step, store paths), in the order they go back


class TrashedRun(NamedTuple):
    run: journal.Run
    bytes: int  # what emptying its folder frees

    def to_json(self) -> dict:
        plan = self.run.plan
        return {"id": self.run.run_id, "created": self.run.created, "command": self.run.command,
                "tags": len(plan.tags), "manifests": len(plan.manifests), "blobs": len(plan.blobs),
                "bytes": self.bytes}


# ---------------------------------------------------------------------------------------------- sizes
def _files(storage: Storage, rel: str) -> Iterator[str]:
    for entry in storage.list_dir(rel) or ():
        child = layout.entry_path(rel, entry.name)
        if entry.kind == DIR:
            yield from _files(storage, child)
        elif entry.kind == FILE:
            yield child


def folder_bytes(storage: Storage, run_id: str) -> int:
    """The bytes of the regular files in a run's trash folder: exactly what emptying it frees."""
    total = 0
    for rel in _files(storage, layout.TrashRun(run_id).path()):
        st = storage.stat(rel)
        total += st.size if st is not None else 0
    return total


def usage(storage: Storage) -> dict:
    """`du`'s line for the trash: how many runs' folders it holds, and their bytes."""
    runs = [e.name for e in storage.list_dir(layout.TRASH) or () if e.kind == DIR and layout.valid_run_id(e.name)]
    return {"count": len(runs), "bytes": sum(folder_bytes(storage, r) for r in runs)}


def trashed(storage: Storage) -> List[TrashedRun]:
    """Every `--trash` run whose folder still holds something (neither emptied nor restored), by id."""
    return [TrashedRun(run, folder_bytes(storage, run.run_id))
            for run in journal.all_runs(storage) if run.trash in journal.IN_TRASH]


def _created(run: journal.Run) -> float:
    return float(calendar.timegm(time.strptime(run.created, "%Y-%m-%dT%H:%M:%SZ")))


def select_for_empty(storage: Storage, run_id: Optional[str], older_than: Optional[float],
                     now: Optional[float] = None) -> List[TrashedRun]:
    """The runs `trash empty` removes: RUN_ID, those created longer ago than `older_than` seconds, or all."""
    if run_id is not None and older_than is not None:
        raise UsageError("give RUN_ID or --older-than, not both")
    runs = trashed(storage)
    if run_id is not None:
        chosen = [r for r in runs if r.run.run_id == run_id]
        if not chosen:
            raise UsageError(f"{run_id}: {_not_in_trash(storage, run_id)}")
        return chosen
    if older_than is not None:
        now = time.time() if now is None else now
        return [r for r in runs if now - _created(r.run) > older_than]
    return runs


def _not_in_trash(storage: Storage, run_id: str) -> str:
    if not layout.valid_run_id(run_id) or storage.stat(layout.RunJournal(run_id).path()) is None:
        return "no such run (`regprune trash list` shows the runs in the trash)"
    run = journal.load(storage, run_id)
    if run.trash is None:
        return "this run removed for good: it was not a --trash run"
    if run.trash == journal.EMPTYING:
        return "this run's trash is being emptied: run `regprune trash empty` again to finish"
    return f"this run's trash was {run.trash}"


# ------------------------------------------------------------------------------------ same filesystem
def refuse_if_other_filesystem(storage: Storage, create: bool) -> None:
    """A trash move is a rename: regprune's folder must be on the filesystem of `docker/registry/v2`.
    `create` makes regprune's folder first (a dry run writes nothing: it looks at the rootdirectory, where
    the folder would be made)."""
    if create:
        storage.make_dir(layout.OWN_DIR)
    own = layout.OWN_DIR if storage.stat(layout.OWN_DIR) is not None else ""
    if storage.filesystem_id(own) != storage.filesystem_id(layout.V2):
        raise Refused(f"{storage.describe(own)}: not on the filesystem of {storage.describe(layout.V2)}, so "
                      "--trash cannot move entries there by renaming them; run without --trash")


# ------------------------------------------------------------------------------------------ restoring
def restorable(storage: Storage, run_id: str) -> journal.Run:
    """The run to restore, refusing one that is not in the trash or not finished."""
    if not layout.valid_run_id(run_id) or storage.stat(layout.RunJournal(run_id).path()) is None:
        raise UsageError(f"{run_id}: {_not_in_trash(storage, run_id)}")
    run = journal.load(storage, run_id)
    if run.trash not in (journal.TRASHED, journal.RESTORING):
        raise UsageError(f"{run_id}: {_not_in_trash(storage, run_id)}")
    if run.state == journal.RUNNING:
        raise Refused(f"{layout.RunJournal(run_id).path()}: this run ({run.command}) is unfinished; run "
                      "`regprune resume` first, then restore it")
    return run


def restore_steps(run: journal.Run) -> Steps:
    """What a restore moves back, the reverse of the deletion's order (blobs before the links that need
    them, children before their index, tags last)."""
    plan = run.plan
    return (
        ("blobs", tuple(layout.BlobDir(b.digest).path() for b in plan.blobs)),
        ("uploads", tuple(layout.UploadDir(u.repo, u.upload_id).path() for u in plan.uploads)),
        ("layer_links", tuple(layout.parent(layout.LayerLink(x.repo, x.digest).path()) for x in plan.layer_links)),
        ("manifests", tuple(layout.parent(layout.RevisionLink(m.repo, m.digest).path())
                            for m in reversed(plan.manifests))),
        ("history", tuple(layout.parent(layout.TagIndexLink(h.repo, h.tag, h.digest).path()) for h in plan.history)),
        ("tags", tuple(layout.TagDir(t.repo, t.tag).path() for t in plan.tags)),
    )


def identical(storage: Storage, run_id: str, rel: str) -> bool:
    """Whether the store holds again exactly what this run's trash holds at `rel` (a layer pushed again
    since, say): a blob's `data` of the same size (its path is its digest), or a small file of the same
    bytes. Restoring it is then nothing to do."""
    ours, theirs = storage.stat(layout.TrashEntry(run_id, rel).path()), storage.stat(rel)
    if ours is None or theirs is None or ours.kind != FILE or theirs.kind != FILE or ours.size != theirs.size:
        return False
    if isinstance(layout.parse_path(rel), layout.BlobData):
        return True
    if ours.size > LINK_LIMIT:
        return False
    return storage.read_small(layout.TrashEntry(run_id, rel).path(), LINK_LIMIT) == storage.read_small(
        rel, LINK_LIMIT)


def conflict(storage: Storage, run_id: str) -> Optional[str]:
    """The first path (sorted) the restore needs that something has taken since: a file of the trash
    whose place holds anything but the same content, or a directory whose place holds something else
    than a directory."""

    def walk(rel: str) -> Optional[str]:
        here = storage.stat(rel)
        if here is None:
            return None  # free: everything below goes back whole
        entries = storage.list_dir(layout.TrashEntry(run_id, rel).path())
        if entries is None:
            return None if identical(storage, run_id, rel) else rel  # a file
        if here.kind != DIR:
            return rel  # a directory where something else is
        for entry in sorted(entries):
            found = walk(layout.entry_path(rel, entry.name))
            if found is not None:
                return found
        return None

    if storage.stat(layout.TrashEntry(run_id, layout.V2).path()) is None:
        return None
    return walk(layout.V2)


def _present(storage: Storage, run_id: str, rel: str) -> bool:
    """In the store, or in this run's trash (about to go back)."""
    return storage.stat(rel) is not None or storage.stat(layout.TrashEntry(run_id, rel).path()) is not None


def _read(storage: Storage, run_id: str, rel: str, limit: int) -> Optional[bytes]:
    data = storage.read_small(layout.TrashEntry(run_id, rel).path(), limit)
    return data if data is not None else storage.read_small(rel, limit)


def missing_need(storage: Storage, run: journal.Run) -> Optional[str]:
    """Why the restored images would not pull, when something they need is in neither the store nor this
    run's trash (a later run removed it): a blob, a `_layers` link, a child manifest, a tag's manifest."""
    run_id = run.run_id
    restored = set()
    for m in run.plan.manifests:
        rel = layout.RevisionLink(m.repo, m.digest).path()
        if not _present(storage, run_id, rel):
            continue  # skipped by the run (it changed since its plan): not coming back
        restored.add((m.repo, m.digest))
        data = _read(storage, run_id, layout.BlobData(m.digest).path(), MAX_MANIFEST_SIZE)
        if data is None:
            return f"{m.repo}@{m.digest}: its manifest blob is gone"
        try:
            manifest = parse(data)
        except ManifestError:
            continue  # the run's plan did not rely on it either
        for d in manifest.blob_references():
            if d.foreign:
                continue
            if d.digest.algorithm == "sha256" and not _present(storage, run_id, layout.BlobData(d.digest).path()):
                return f"{m.repo}@{m.digest}: needs blob {d.digest}, which is gone"
            if not _present(storage, run_id, layout.LayerLink(m.repo, d.digest).path()):
                return f"{m.repo}@{m.digest}: needs the _layers link of {d.digest}, which is gone"
        for child in manifest.children:
            if child.digest.algorithm == "sha256" and not _present(
                    storage, run_id, layout.RevisionLink(m.repo, child.digest).path()):
                return f"{m.repo}@{m.digest}: needs its child manifest {child.digest}, which is gone"
    for t in run.plan.tags:
        current = layout.TagCurrentLink(t.repo, t.tag).path()
        body = storage.read_small(layout.TrashEntry(run_id, current).path(), LINK_LIMIT)
        target = link_target(body, current, None)[0] if body is not None else None
        if target is not None and (t.repo, target) not in restored and storage.stat(
                layout.RevisionLink(t.repo, target).path()) is None:
            return f"{t.repo}:{t.tag}: points at {target}, which is gone"
    return None


def refuse_if_not_restorable(storage: Storage, run: journal.Run, force: bool) -> None:
    taken = conflict(storage, run.run_id)
    if taken is not None:
        raise Refused(f"{taken}: taken since {run.run_id} moved it to the trash; restoring would overwrite it "
                      "(move it away first)")
    if force:
        return
    missing = missing_need(storage, run)
    if missing is not None:
        raise Refused(f"{missing}: restoring {run.run_id} would bring back an image that cannot be pulled; "
                      "restore the later run that moved it first, if it is in the trash (override: --force)")


def counts(run: journal.Run) -> str:
    plan = run.plan
    return f"{len(plan.tags)} tag(s), {len(plan.manifests)} manifest(s), {len(plan.blobs)} blob(s)"


def restore(storage: Storage, run: journal.Run, workers: int = 8,
            on_step: Optional[Callable[[str], None]] = None) -> journal.Run:
    """Mark the run `restoring`, move everything back, mark it `restored`. Call under the lock, after
    `refuse_if_not_restorable`."""
    run = journal.set_trash(storage, run, journal.RESTORING)
    execute.restore(storage, run.run_id, restore_steps(run), workers,
                    lambda rel: identical(storage, run.run_id, rel), on_step)
    return journal.set_trash(storage, run, journal.RESTORED)


def empty(storage: Storage, runs: Sequence[TrashedRun]) -> int:
    """Remove the runs' trash folders for good; the bytes freed."""
    freed = 0
    for item in runs:
        run = journal.set_trash(storage, item.run, journal.EMPTYING)
        execute.empty_trash(storage, run.run_id)
        journal.set_trash(storage, run, journal.EMPTIED, item.bytes)
        freed += item.bytes
    return freed
