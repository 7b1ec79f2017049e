"""The read-only reports (`du`, `ls`, `check`) as plain, sorted, JSON-ready values."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence

from . import manifest as manifest_mod
from .configs import read_created
from .errors import UsageError
from .findings import DAMAGE, SEVERITIES, Finding
from .graph import Graph, RepoGraph
from .storage import Storage

SORTS = ("bytes", "exclusive", "name")


def iso_time(ts: float) -> Optional[str]:
    if not ts:
        return None
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _count_bytes(graph: Graph, blobs: List[int]) -> dict:
    return {"count": len(blobs), "bytes": graph.size_of(blobs)}


def du(graph: Graph, sort: str = "bytes", top: Optional[int] = None, trash: Optional[dict] = None) -> dict:
    """`trash`: what regprune's trash holds (`regprune.trash.usage`), which is not part of the graph."""
    if sort not in SORTS:
        raise UsageError(f"--sort: {sort!r} is not one of {', '.join(SORTS)}")
    store = graph.store
    rows = []
    for name, rg in graph.repos.items():
        total, exclusive = graph.repo_sizes(name)
        rows.append({
            "name": name,
            "tags": len(rg.repo.tags),
            "manifests": len(rg.repo.revisions),
            "untagged": len(rg.untagged),
            "bytes": total,
            "exclusive_bytes": exclusive,
        })
    if sort == "bytes":
        rows.sort(key=lambda r: (-r["bytes"], r["name"]))
    elif sort == "exclusive":
        rows.sort(key=lambda r: (-r["exclusive_bytes"], r["name"]))
    else:
        rows.sort(key=lambda r: r["name"])
    if top is not None:
        rows = rows[:top]
    uploads = [u for repo in store.repositories.values() for u in repo.uploads]
    stored = list(store.stored_ids())
    return {
        "blobs": _count_bytes(graph, stored),
        "orphans": _count_bytes(graph, graph.orphans()),
        "uploads": {"count": len(uploads), "bytes": sum(u.size for u in uploads)},
        "trash": dict(trash) if trash is not None else {"count": 0, "bytes": 0},
        "untagged": {"count": sum(len(rg.untagged) for rg in graph.repos.values()),
                     "bytes": graph.size_of(graph.untagged_freed())},
        "repositories": rows,
        "findings": [f.to_json() for f in graph.all_findings()],
    }


def _kind(graph: Graph, rev: int) -> str:
    node = graph.node(rev)
    return node.kind if node is not None else manifest_mod.UNKNOWN


def _image_row(graph: Graph, rg: RepoGraph, rev: int, need_counts: Dict[int, int]) -> dict:
    store = graph.store
    node = graph.node(rev)
    repo = rg.repo
    tags = sorted(rg.tagged.get(rev, ()))
    total, exclusive = graph.image_sizes(rg, rev, need_counts)
    pushed = max((repo.tags[t].mtime for t in tags), default=repo.revisions.get(rev, 0.0))
    return {
        "repository": repo.name,
        "digest": str(store.digest(rev)),
        "tags": tags,
        "kind": _kind(graph, rev),
        "media_type": node.media_type if node is not None else "",
        "bytes": total,
        "exclusive_bytes": exclusive,
        "platforms": _platforms(graph, rg, rev),
        "created": None,
        "pushed": iso_time(pushed),
    }


def _platforms(graph: Graph, rg: RepoGraph, rev: int) -> List[str]:
    """The platforms of an index's images, through nested indexes (whose own entries name none)."""
    node = graph.node(rev)
    if node is None or node.kind != manifest_mod.INDEX:
        return []
    found = set()
    for member in graph.image_closure(rg, rev):
        member_node = graph.node(member)
        if member_node is None or member_node.kind != manifest_mod.INDEX:
            continue
        for child, label in zip(member_node.children, member_node.platforms):
            child_node = graph.node(child)
            if label and not (child_node is not None and child_node.kind == manifest_mod.INDEX):
                found.add(label)
    return sorted(found)


def _config_of(graph: Graph, rg: RepoGraph, rev: int) -> List[int]:
    """Config blobs whose `created` dates this image: its own, or its children's for an index."""
    node = graph.node(rev)
    if node is None:
        return []
    if node.config >= 0 and node.kind == manifest_mod.IMAGE:
        return [node.config]
    out = []
    for child in graph.image_closure(rg, rev):
        child_node = graph.node(child)
        if child_node is not None and child_node.kind == manifest_mod.IMAGE and child_node.config >= 0:
            out.append(child_node.config)
    return out


def ls(graph: Graph, storage: Storage, repositories: Sequence[str] = (), workers: int = 16) -> dict:
    unknown = sorted(set(repositories) - set(graph.repos))
    if unknown:
        raise UsageError(f"{unknown[0]}: no such repository in {graph.store.rootdirectory}")
    wanted = sorted(set(repositories)) if repositories else sorted(graph.repos)
    rows = []
    configs: Dict[int, List[int]] = {}
    for name in wanted:
        rg = graph.repos[name]
        need_counts = graph.repo_need_counts(rg)
        for rev in graph.image_roots(rg):
            row = _image_row(graph, rg, rev, need_counts)
            configs[len(rows)] = _config_of(graph, rg, rev)
            rows.append(row)
    created = read_created(storage, graph.store, (c for cs in configs.values() for c in cs), workers)
    for i, row in enumerate(rows):
        dates = [created[c] for c in configs[i] if c in created]
        row["created"] = max(dates) if dates else None
    rows.sort(key=lambda r: (r["repository"], r["tags"][0] if r["tags"] else "\U0010ffff", r["digest"]))
    return {"images": rows}


def check(graph: Graph, extra: Sequence[Finding] = ()) -> dict:
    findings = sorted(set(graph.all_findings()) | set(extra), key=Finding.sort_key)
    counts = {s: 0 for s in SEVERITIES}
    for f in findings:
        counts[f.severity] += 1
    return {"findings": [f.to_json() for f in findings], "counts": counts, "damaged": counts[DAMAGE] > 0}
