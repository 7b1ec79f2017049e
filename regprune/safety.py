"""When a deletion refuses to run: each refusal names its reason and, where there is one, its override."""

from __future__ import annotations

import os
import re
import time
from typing import List, NamedTuple, Optional

from . import layout
from .errors import Refused
from .findings import Finding
from .graph import Graph
from .plan import DeletionPlan

RECENT_UPLOAD_SECONDS = 600
#: Damage that hides part of the store from the scan: whatever is behind it may need any blob.
UNTRUSTWORTHY = ("symlink", "unreadable")
#: What may hide a manifest's references: a manifest nobody can parse, a revision whose blob is gone,
#: and a broken revision or tag link (the manifest it meant may still be repaired, if its blobs stay).
UNREADABLE_MANIFESTS = ("manifest-unparseable", "manifest-unknown-type", "revision-blob-missing",
                        "tag-target-missing")
BROKEN_LINKS = ("link-empty", "link-malformed", "link-mismatch")


def _hides_references(finding: Finding) -> bool:
    if finding.code in UNREADABLE_MANIFESTS:
        return True
    return finding.code in BROKEN_LINKS and "/_manifests/" in finding.path


class Overrides(NamedTuple):
    force: bool = False  # a registry seems to be running, or an upload is very recent
    ignore_unreadable: bool = False  # unparseable or unknown manifests exist


def _registry_processes(rootdirectory: str) -> List[str]:
    """Processes on this machine that look like a registry serving `rootdirectory` (or one we cannot
    tell about: a registry whose configuration we cannot read might be serving this store)."""
    found = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    root = os.path.realpath(rootdirectory)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv or "serve" not in argv:
            continue
        exe = os.path.basename(argv[0])
        if exe not in ("registry", "docker-registry"):
            continue
        if _serves(pid, argv, root) is not False:
            found.append(f"pid {pid} ({' '.join(argv)[:120]})")
    return found


def _serves(pid: str, argv: List[str], root: str) -> Optional[bool]:
    """True/False when the process's storage root can be read, None when it cannot be told."""
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            return None  # in a container: its paths are not ours, and its volume may be this store

        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        from_env = env.get(b"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
        if from_env:
            return os.path.realpath(from_env.decode()) == root
        config = argv[-1]
        if not os.path.isabs(config):
            config = os.path.join(os.readlink(f"/proc/{pid}/cwd"), config)
        with open(f"/proc/{pid}/root{config}", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except (OSError, ValueError):
        return None
    match = re.search(r"^\s*rootdirectory:\s*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
    if match is None:
        return None
    return os.path.realpath(match.group(1)) == root


def refuse_if_unsafe(graph: Graph, plan: DeletionPlan, overrides: Overrides, now: Optional[float] = None) -> None:
    store = graph.store
    if store.pull_through_cache:
        raise Refused(f"{layout.SCHEDULER_STATE}: this store is a "
                      "pull-through cache; the registry expires its content itself and regprune does not prune it")
    findings = graph.all_findings()
    hiding = [f for f in findings if f.code in UNTRUSTWORTHY]
    if hiding:
        f = hiding[0]
        raise Refused(f"{f.path}: {f.code} {f.value!r}: the scan cannot see behind it, so no deletion is safe; "
                      f"fix it first ({len(hiding)} such finding(s); `regprune check` lists them)")
    touches_data = bool(plan.blobs or plan.layer_links or plan.repositories)
    unreadable = [f for f in findings if _hides_references(f)]
    if unreadable and touches_data and not overrides.ignore_unreadable:
        f = unreadable[0]
        raise Refused(f"{f.path}: {f.code} {f.value!r}: a manifest whose references cannot be read may need the "
                      "blobs this would delete; refusing (override: --ignore-unreadable)")
    if overrides.force:
        return
    running = _registry_processes(store.rootdirectory)
    if running:
        raise Refused(f"{store.rootdirectory}: a registry process may be serving this store ({running[0]}); "
                      "stop it or make it read-only first (override: --force)")
    now = time.time() if now is None else now
    for repo in store.repositories.values():
        for upload in repo.uploads:
            if upload.started_at is not None and now - upload.started_at < RECENT_UPLOAD_SECONDS:
                raise Refused(f"{layout.UploadDir(repo.name, upload.upload_id).path()}: an upload started "
                              f"{int(now - upload.started_at)}s ago: a push may be in progress (override: --force)")
