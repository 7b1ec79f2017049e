"""The journal of destructive runs, in regprune's own folder beside `docker/`.

Before the first write, the whole plan is saved as `regprune/runs/<id>.json` (state `running`); each
completed phase is appended to `<id>.log`; a run that ends rewrites its journal with state `done`
and the bytes it freed. A `running` journal is an interrupted run: `regprune resume` finishes it, and
every destructive command refuses to start until then. Finished journals stay as the run history.

A `--trash` run's journal also says where its trash stands (`trash`: `trashed` while what it moved is in
`regprune/trash/<id>/`, then `restoring` / `restored` or `emptying` / `emptied`), each change rewritten
at once; a `restoring` run blocks the destructive commands like a `running` one.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timezone
from typing import List, NamedTuple, Optional, Tuple

import orjson

from . import layout
from .digest import Digest
from .plan import (
    BlobAction,
    DeletionPlan,
    HistoryAction,
    LayerLinkAction,
    ManifestAction,
    TagAction,
    UploadAction,
)
from .storage import FILE, Storage

RUNNING = "running"
DONE = "done"

#: Where a `--trash` run's trash stands.
TRASHED = "trashed"
RESTORING = "restoring"
RESTORED = "restored"
EMPTYING = "emptying"
EMPTIED = "emptied"
IN_TRASH = (TRASHED, RESTORING, EMPTYING)  # its folder still holds something


class Run(NamedTuple):
    run_id: str
    created: str
    command: str
    argv: Tuple[str, ...]
    state: str
    plan: DeletionPlan
    phases_done: Tuple[str, ...]
    bytes_freed: int  # a `--trash` run: the bytes it moved to the trash
    finished: Optional[str]
    trash: Optional[str] = None  # None: removed for good; else TRASHED, RESTORING, ...
    trash_changed: Optional[str] = None  # when `trash` last changed
    trash_freed: int = 0  # bytes emptying its trash freed


def _plan_doc(plan: DeletionPlan) -> dict:
    return {
        "command": plan.command,
        "tags": [[t.repo, t.tag, str(t.current) if t.current else None] for t in plan.tags],
        "history": [[h.repo, h.tag, str(h.digest)] for h in plan.history],
        "manifests": [[m.repo, str(m.digest)] for m in plan.manifests],
        "layer_links": [[x.repo, str(x.digest)] for x in plan.layer_links],
        "blobs": [[str(b.digest), b.size, b.mtime] for b in plan.blobs],
        "uploads": [[u.repo, u.upload_id, u.size] for u in plan.uploads],
        "repositories": list(plan.repositories),
        "kept_recent": list(plan.kept_recent),
    }


def _plan_from_doc(doc: dict) -> DeletionPlan:
    """Rebuild a plan, validating every name and digest again: a journal is input like any other."""
    for repo, *_ in doc["tags"] + doc["history"] + doc["manifests"] + doc["layer_links"] + doc["uploads"]:
        if not layout.valid_repository_name(repo):
            raise ValueError(f"invalid repository name {repo!r}")
    for name in doc["repositories"]:
        if not layout.valid_repository_name(name):
            raise ValueError(f"invalid repository name {name!r}")
    return DeletionPlan(
        command=str(doc["command"]),
        tags=tuple(TagAction(r, t, Digest.parse(c) if c else None) for r, t, c in doc["tags"]),
        history=tuple(HistoryAction(r, t, Digest.parse(d)) for r, t, d in doc["history"]),
        manifests=tuple(ManifestAction(r, Digest.parse(d)) for r, d in doc["manifests"]),
        layer_links=tuple(LayerLinkAction(r, Digest.parse(d)) for r, d in doc["layer_links"]),
        blobs=tuple(BlobAction(Digest.parse(d), int(s), float(m)) for d, s, m in doc["blobs"]),
        uploads=tuple(UploadAction(r, str(i), int(s)) for r, i, s in doc["uploads"]),
        repositories=tuple(doc["repositories"]),
        kept_recent=(int(doc["kept_recent"][0]), int(doc["kept_recent"][1])),
    )


def _now_iso() -> str:
    return datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(storage: Storage, run: Run) -> None:
    doc = {
        "id": run.run_id, "created": run.created, "command": run.command, "argv": list(run.argv),
        "state": run.state, "plan": _plan_doc(run.plan), "bytes_freed": run.bytes_freed,
        "finished": run.finished,
        "trash": None if run.trash is None else {"state": run.trash, "changed": run.trash_changed,
                                                  "freed": run.trash_freed},
    }
    storage.write_atomic(layout.RunJournal(run.run_id).path(), orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def start(storage: Storage, plan: DeletionPlan, argv: Tuple[str, ...], trash: bool = False) -> Run:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    verb = plan.command.split(" ", 1)[0]
    run_id = f"{stamp}-{verb if layout.valid_run_id(verb) else 'run'}-{secrets.token_hex(3)}"
    run = Run(run_id, _now_iso(), plan.command, tuple(argv), RUNNING, plan, (), 0, None,
              TRASHED if trash else None, None, 0)
    _write(storage, run)
    return run


def record_phase(storage: Storage, run: Run, phase: str, freed: int) -> Run:
    """Append a completed phase and the bytes it freed (so an interrupted run's history still counts them)."""
    storage.append(layout.RunLog(run.run_id).path(), f"{_now_iso()} done {phase} {freed}\n".encode())
    return run._replace(phases_done=run.phases_done + (phase,), bytes_freed=run.bytes_freed + freed)


def finish(storage: Storage, run: Run) -> Run:
    run = run._replace(state=DONE, finished=_now_iso())
    _write(storage, run)
    return run


def set_trash(storage: Storage, run: Run, state: str, freed: int = 0) -> Run:
    """Record where a `--trash` run's trash stands now."""
    run = run._replace(trash=state, trash_changed=_now_iso(), trash_freed=freed)
    _write(storage, run)
    return run


def load(storage: Storage, run_id: str) -> Run:
    data = storage.read_small(layout.RunJournal(run_id).path(), 512 * 1024 * 1024)
    if data is None:
        raise FileNotFoundError(layout.RunJournal(run_id).path())
    doc = orjson.loads(data)
    log = storage.read_small(layout.RunLog(run_id).path(), 1024 * 1024) or b""
    phases = []
    logged = 0
    for line in log.decode().splitlines():
        _, sep, rest = line.partition(" done ")
        if sep:
            phase, _, freed = rest.partition(" ")
            phases.append(phase)
            logged += int(freed) if freed.isdigit() else 0
    freed_total = int(doc.get("bytes_freed", 0)) if doc["state"] == DONE else logged
    trash = doc.get("trash") or {}
    state = trash.get("state")
    if state is not None and state not in IN_TRASH + (RESTORED, EMPTIED):
        raise ValueError(f"unknown trash state {state!r}")
    return Run(doc["id"], doc["created"], doc["command"], tuple(doc.get("argv", ())), doc["state"],
               _plan_from_doc(doc["plan"]), tuple(phases), freed_total, doc.get("finished"),
               state, trash.get("changed"), int(trash.get("freed", 0)))


def run_ids(storage: Storage) -> List[str]:
    ids = []
    for entry in storage.list_dir(layout.RUNS) or ():
        stem, ext = os.path.splitext(entry.name)
        if entry.kind == FILE and ext == ".json" and layout.valid_run_id(stem):
            ids.append(stem)
    return sorted(ids)


def all_runs(storage: Storage) -> List[Run]:
    return [load(storage, run_id) for run_id in run_ids(storage)]


def unfinished(storage: Storage) -> Optional[Run]:
    for run in all_runs(storage):
        if run.state == RUNNING:
            return run
    return None
