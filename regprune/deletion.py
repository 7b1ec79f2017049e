"""Destructive runs end to end: lock, scan, plan, refuse or execute under a journal, and resume.

The CLI calls these with the user's choices; the confirmation prompt sits between `plan` and `execute`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Set, Tuple

from . import journal, layout
from .errors import Refused, UsageError
from .execute import Outcome, apply_plan
from .graph import Graph
from .plan import DeletionPlan, Selection, make_plan, revalidate
from .safety import Overrides, refuse_if_unsafe
from .scan import DEFAULT_WORKERS, Progress, ScanOptions, complete, scan
from .storage import LocalStorage, Locked, Storage
from .store_access import Opened, locate
from .trash import refuse_if_other_filesystem


class Session(NamedTuple):
    opened: Opened
    locked: bool


@contextmanager
def locked(path: str, lock: bool = True) -> Iterator[Storage]:
    """The store's storage, holding regprune's lock meanwhile when `lock` (a real run)."""
    storage = LocalStorage(locate(path))
    held = None
    if lock:
        try:
            held = storage.lock(layout.LOCK)
        except Locked as exc:
            raise Refused(f"{exc.path}: another regprune run is working on this store; wait for it") from None
    try:
        yield storage
    finally:
        if held is not None:
            held.release()


@contextmanager
def session(path: str, workers: int = DEFAULT_WORKERS, progress: Optional[Progress] = None,
            lock: bool = True, light: bool = False) -> Iterator[Opened]:
    """Scan the store, holding regprune's lock for the whole run when `lock` (a real run). A `light` scan
    leaves out tag history and the stat of each `_layers` link; `plan` completes the repositories its
    selection touches (all of them for `gc`)."""
    root = locate(path)
    with locked(root, lock) as storage:
        options = ScanOptions(workers=workers, progress=progress, tag_history=not light, stat_layer_links=not light)
        store = scan(storage, root, options)
        yield Opened(root, storage, Graph(store))


def touched(graph: Graph, selection: Selection) -> Set[str]:
    """The repositories whose tags, links or uploads a plan for `selection` may remove."""
    if selection.gc:
        return set(graph.repos)
    return (set(selection.tags) | set(selection.revisions) | set(selection.repositories)
            | set(selection.untagged))


def refuse_if_unfinished(storage: Storage, restoring_ok: Optional[str] = None) -> None:
    """Refuse while a run is interrupted, or the restore of a trash run (other than `restoring_ok`) is."""
    for run in journal.all_runs(storage):
        if run.state == journal.RUNNING:
            raise Refused(f"{layout.RunJournal(run.run_id).path()}: an interrupted run ({run.command}) is "
                          "unfinished; run `regprune resume` first")
        if run.trash == journal.RESTORING and run.run_id != restoring_ok:
            raise Refused(f"{layout.RunJournal(run.run_id).path()}: the restore of {run.run_id} from the trash "
                          f"was interrupted; run `regprune trash restore {run.run_id}` first")


def plan(opened: Opened, selection: Selection, command: str, grace_seconds: float,
         overrides: Overrides) -> DeletionPlan:
    refuse_if_unfinished(opened.storage)
    complete(opened.storage, opened.graph.store, touched(opened.graph, selection))
    result = make_plan(opened.graph, selection, command, grace_seconds=grace_seconds)
    refuse_if_unsafe(opened.graph, result, overrides)
    return result


def execute(opened: Opened, the_plan: DeletionPlan, argv: Sequence[str], workers: int = 8,
            on_progress: Optional[Callable[[str, int], None]] = None, trash: bool = False) -> Outcome:
    """Journal the plan, then carry it out (with `trash`, moving into the trash instead of removing: call
    `refuse_if_other_filesystem` first). Only call inside a locked `session`."""
    storage = opened.storage
    run = journal.start(storage, the_plan, tuple(argv), trash=trash)
    state = {"run": run}

    def on_phase(phase: str, freed: int) -> None:
        state["run"] = journal.record_phase(storage, state["run"], phase, freed)

    outcome = apply_plan(storage, the_plan, workers=workers, on_phase=on_phase, on_progress=on_progress,
                         trash_run=run.run_id if trash else None)
    journal.finish(storage, state["run"])
    return outcome


def pending_resume(opened: Opened, overrides: Overrides) -> Tuple[journal.Run, DeletionPlan, int]:
    """The interrupted run, and the part of its plan that is still safe on the tree as it is now."""
    run = journal.unfinished(opened.storage)
    if run is None:
        raise UsageError(f"{opened.rootdirectory}: no interrupted run to resume")
    if run.trash is not None:
        refuse_if_other_filesystem(opened.storage, create=True)
    safe, dropped = revalidate(run.plan, opened.graph)
    refuse_if_unsafe(opened.graph, safe, overrides)
    return run, safe, dropped


def resume(opened: Opened, run: journal.Run, safe: DeletionPlan, workers: int = 8,
           on_progress: Optional[Callable[[str, int], None]] = None) -> Outcome:
    storage = opened.storage
    state = {"run": run}

    def on_phase(phase: str, freed: int) -> None:
        state["run"] = journal.record_phase(storage, state["run"], phase, freed)

    outcome = apply_plan(storage, safe, workers=workers, phases_done=run.phases_done, on_phase=on_phase,
                         on_progress=on_progress, trash_run=run.run_id if run.trash is not None else None)
    journal.finish(storage, state["run"])
    return outcome


def consistent(graph: Graph) -> bool:
    """No reference to something missing: what tests (and `check`) assert after every run."""
    bad = {"blob-missing", "index-child-missing", "tag-target-missing", "revision-blob-missing",
           "alias-unresolved"}
    return not any(f.code in bad for f in graph.all_findings())
