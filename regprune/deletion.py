"""Destructive runs end to end: lock, scan, plan, refuse or execute under a journal, and resume.

The CLI calls these with the user's choices; the confirmation prompt sits between `plan` and `execute`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Tuple

from . import journal, layout
from .errors import Refused, UsageError
from .execute import Outcome, apply_plan
from .graph import Graph
from .plan import DeletionPlan, Selection, make_plan, revalidate
from .safety import Overrides, refuse_if_unsafe
from .scan import DEFAULT_WORKERS, Progress, ScanOptions, scan
from .storage import LocalStorage, Locked, Storage
from .store_access import Opened, locate


class Session(NamedTuple):
    opened: Opened
    locked: bool


@contextmanager
def session(path: str, workers: int = DEFAULT_WORKERS, progress: Optional[Progress] = None,
            lock: bool = True) -> Iterator[Opened]:
    """Scan the store, holding regprune's lock for the whole run when `lock` (a real run)."""
    root = locate(path)
    storage = LocalStorage(root)
    held = None
    if lock:
        try:
            held = storage.lock(layout.LOCK)
        except Locked as exc:
            raise Refused(f"{exc.path}: another regprune run is working on this store; wait for it") from None
    try:
        store = scan(storage, root, ScanOptions(workers=workers, progress=progress))
        yield Opened(root, storage, Graph(store))
    finally:
        if held is not None:
            held.release()


def refuse_if_unfinished(storage: Storage) -> None:
    pending = journal.unfinished(storage)
    if pending is not None:
        raise Refused(f"{layout.RunJournal(pending.run_id).path()}: an interrupted run ({pending.command}) is "
                      "unfinished; run `regprune resume` first")


def plan(opened: Opened, selection: Selection, command: str, grace_seconds: float,
         overrides: Overrides) -> DeletionPlan:
    refuse_if_unfinished(opened.storage)
    result = make_plan(opened.graph, selection, command, grace_seconds=grace_seconds)
    refuse_if_unsafe(opened.graph, result, overrides)
    return result


def execute(opened: Opened, the_plan: DeletionPlan, argv: Sequence[str], workers: int = 8,
            on_progress: Optional[Callable[[str, int], None]] = None) -> Outcome:
    """Journal the plan, then carry it out. Only call inside a locked `session`."""
    storage = opened.storage
    run = journal.start(storage, the_plan, tuple(argv))
    state = {"run": run}

    def on_phase(phase: str, freed: int) -> None:
        state["run"] = journal.record_phase(storage, state["run"], phase, freed)

    outcome = apply_plan(storage, the_plan, workers=workers, on_phase=on_phase, on_progress=on_progress)
    journal.finish(storage, state["run"])
    return outcome


def pending_resume(opened: Opened, overrides: Overrides) -> Tuple[journal.Run, DeletionPlan, int]:
    """The interrupted run, and the part of its plan that is still safe on the tree as it is now."""
    run = journal.unfinished(opened.storage)
    if run is None:
        raise UsageError(f"{opened.rootdirectory}: no interrupted run to resume")
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
                         on_progress=on_progress)
    journal.finish(storage, state["run"])
    return outcome


def consistent(graph: Graph) -> bool:
    """No reference to something missing: what tests (and `check`) assert after every run."""
    bad = {"blob-missing", "index-child-missing", "tag-target-missing", "revision-blob-missing",
           "alias-unresolved"}
    return not any(f.code in bad for f in graph.all_findings())
