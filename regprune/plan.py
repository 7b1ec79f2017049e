"""Deletion plans: what a destructive command would remove, decided before anything is touched.

`make_plan()` is pure: it reads a `Graph` and returns a `DeletionPlan` value. Rendering it is a dry
run; `regprune.execute.apply_plan()` is the only code that acts on one. The rules:

- removed tags go; a manifest goes when no remaining tag of its repository reaches it (directly, as a
  child of a tagged index, or as a referrer of a reachable manifest), and so do its children under the
  same rule and its referrers (untagged ones: a referrer with a tag of its own is the user's, it stays);
- a `_layers` link goes when no remaining revision of its repository needs its blob;
- a blob goes when no remaining revision of any repository needs it (targeted deletions only consider
  the blobs the removed manifests needed; `gc` considers every orphan);
- blobs, untagged revisions and uploads changed within the grace window stay (a push racing us).
"""

from __future__ import annotations

import time
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from .digest import Digest
from .errors import Refused
from .graph import Graph, RepoGraph
from .model import NO_ID, Repository


class TagAction(NamedTuple):
    repo: str
    tag: str
    current: Optional[Digest]  # what the plan saw; the executor skips the tag if it moved since


class HistoryAction(NamedTuple):
    repo: str
    tag: str
    digest: Digest


class ManifestAction(NamedTuple):
    repo: str
    digest: Digest


class LayerLinkAction(NamedTuple):
    repo: str
    digest: Digest  # sha256, or the sha384/sha512 name of an alias link


class BlobAction(NamedTuple):
    digest: Digest
    size: int
    mtime: float


class UploadAction(NamedTuple):
    repo: str
    upload_id: str
    size: int


class DeletionPlan(NamedTuple):
    command: str
    tags: Tuple[TagAction, ...]
    history: Tuple[HistoryAction, ...]
    manifests: Tuple[ManifestAction, ...]  # an index before its children
    layer_links: Tuple[LayerLinkAction, ...]
    blobs: Tuple[BlobAction, ...]
    uploads: Tuple[UploadAction, ...]
    repositories: Tuple[str, ...]  # whose _manifests/_layers/_uploads go (removed or left empty)
    kept_recent: Tuple[int, int]  # (count, bytes) kept by the grace window

    @property
    def bytes_freed(self) -> int:
        return sum(b.size for b in self.blobs) + sum(u.size for u in self.uploads)

    def is_empty(self) -> bool:
        return not (self.tags or self.history or self.manifests or self.layer_links or self.blobs
                    or self.uploads or self.repositories)

    def to_json(self, dry_run: bool) -> dict:
        return {
            "dry_run": dry_run,
            "command": self.command,
            "tags": [{"repo": t.repo, "tag": t.tag} for t in self.tags],
            "tag_history": [{"repo": h.repo, "tag": h.tag, "digest": str(h.digest)} for h in self.history],
            "manifests": [{"repo": m.repo, "digest": str(m.digest)} for m in sorted(self.manifests)],
            "layer_links": [{"repo": x.repo, "digest": str(x.digest)} for x in self.layer_links],
            "blobs": [{"digest": str(b.digest), "size": b.size} for b in self.blobs],
            "uploads": [{"repo": u.repo, "id": u.upload_id, "size": u.size} for u in self.uploads],
            "repositories": list(self.repositories),
            "bytes_freed": self.bytes_freed,
            "kept_recent": {"count": self.kept_recent[0], "bytes": self.kept_recent[1]},
        }


class Selection(NamedTuple):
    """What the user asked to remove; the planner adds what follows from it."""

    tags: Dict[str, Set[str]] = {}  # repo -> tags
    revisions: Dict[str, Set[int]] = {}  # repo -> manifest ids (HTTP-delete semantics)
    repositories: Set[str] = frozenset()  # type: ignore[assignment]
    untagged: Set[str] = frozenset()  # type: ignore[assignment] # repos whose unreachable revisions go
    gc: bool = False  # orphans, unneeded links, dangling history, old uploads, empty repositories
    uploads_older_than: Optional[float] = None  # seconds; gc only
    keep_empty_repos: bool = False


class _RepoOutcome(NamedTuple):
    removed_tags: List[str]
    removed: Set[int]
    remaining: Set[int]
    before: Set[int]  # blobs the repository needed
    after: Set[int]  # blobs it still needs


def _plan_repo(graph: Graph, rg: RepoGraph, sel: Selection, recent: float) -> Optional[_RepoOutcome]:
    repo = rg.repo
    name = repo.name
    explicit_tags = sel.tags.get(name, set())
    explicit_revs = sel.revisions.get(name, set())
    whole = name in sel.repositories
    untagged_too = name in sel.untagged
    if not (explicit_tags or explicit_revs or whole or untagged_too or sel.gc):
        return None

    if whole:
        removed_tags = sorted(repo.tags)
        removed = set(repo.revisions)
    else:
        removed_tags = sorted(t for t, info in repo.tags.items()
                              if t in explicit_tags or info.current in explicit_revs)
        kept_tags = [t for t in repo.tags if t not in set(removed_tags)]
        roots = [repo.tags[t].current for t in kept_tags if repo.tags[t].current != NO_ID]
        candidates: Set[int] = set()
        for t in removed_tags:
            if repo.tags[t].current != NO_ID:
                candidates.add(repo.tags[t].current)
        candidates |= explicit_revs
        if untagged_too:
            # a revision pushed within the grace window may be an image whose tag is still on its way
            fresh = [r for r in repo.revisions if repo.revisions[r] > recent]
            roots += fresh
            candidates |= set(repo.revisions)
        # every revision the selection does not reach stays, untagged ones included: what they list stays too
        selected = graph.reach(rg, candidates)  # the candidates, their children and referrers
        roots += [r for r in repo.revisions if r not in selected]
        reachable = graph.reach(rg, roots, exclude=explicit_revs)
        for rev in sorted(explicit_revs, key=graph.store.digest):
            parents = [p for p in rg.parents.get(rev, ()) if p in reachable]
            if parents:
                raise Refused(f"{name}@{graph.store.digest(rev)}: a child of {name}@"
                              f"{graph.store.digest(parents[0])}, which stays; deleting it would break that "
                              "image (delete the index's tag instead)")
        removed = selected - reachable
        removed &= set(repo.revisions)
    remaining = set(repo.revisions) - removed
    before = graph.needed_by(repo, repo.revisions)
    after = graph.needed_by(repo, remaining)
    return _RepoOutcome(removed_tags, removed, remaining, before, after)


def _order_parents_first(graph: Graph, repo: Repository, revisions: Set[int]) -> List[int]:
    """Indexes before their children, so an interruption never leaves an index without a child."""
    depth: Dict[int, int] = {}

    def level(rev: int, trail: frozenset) -> int:
        if rev in depth:
            return depth[rev]
        node = graph.node(rev)
        kids = [c for c in (node.children if node else ()) if c in revisions and c not in trail]
        depth[rev] = 1 + max((level(c, trail | {rev}) for c in kids), default=0)
        return depth[rev]

    for rev in revisions:
        level(rev, frozenset())
    return sorted(revisions, key=lambda r: (-depth[r], graph.store.digest(r)))


def make_plan(graph: Graph, sel: Selection, command: str, grace_seconds: float = 3600.0,
              now: Optional[float] = None) -> DeletionPlan:
    now = time.time() if now is None else now
    recent = now - grace_seconds
    store = graph.store
    tags: List[TagAction] = []
    history: List[HistoryAction] = []
    manifests: List[ManifestAction] = []
    links: List[LayerLinkAction] = []
    uploads: List[UploadAction] = []
    repositories: List[str] = []
    freed_candidates: Set[int] = set()
    lost_need: Dict[int, int] = {}  # blob -> repositories that stop needing it
    kept_count = 0
    kept_bytes = 0
    kept_blobs: Set[int] = set()
    fresh_targets: Set[int] = set()  # blobs behind a _layers link kept by the grace window

    def is_recent(blob_id: int) -> bool:
        return bool(store.stored[blob_id]) and store.mtimes[blob_id] > recent

    for name, rg in graph.repos.items():
        outcome = _plan_repo(graph, rg, sel, recent)
        if outcome is None:
            continue
        repo = rg.repo
        for t in outcome.removed_tags:
            current = repo.tags[t].current
            tags.append(TagAction(name, t, store.digest(current) if current != NO_ID else None))
        removed_tag_set = set(outcome.removed_tags)
        for t in sorted(repo.tags):
            if t in removed_tag_set:
                continue
            for h in repo.tags[t].history:
                gone = h in outcome.removed or (sel.gc and h not in repo.revisions)
                if gone:
                    history.append(HistoryAction(name, t, store.digest(h)))
        for rev in _order_parents_first(graph, repo, outcome.removed):
            manifests.append(ManifestAction(name, store.digest(rev)))
        lost = outcome.before - outcome.after
        for b in lost:
            lost_need[b] = lost_need.get(b, 0) + 1
        freed_candidates |= lost
        busy = False
        # _layers links: those whose blob the repository no longer needs (gc: every unneeded one)
        link_targets = [(d, t, m > recent) for d, t, m in store.layer_links(repo)]
        link_targets += [(d, t, False) for d, t in repo.aliases.items()]
        for link_digest, target, fresh in sorted(link_targets, key=lambda p: (p[0].algorithm, p[0].hex)):
            if target != NO_ID and target in outcome.after:
                continue
            if not (sel.gc or target in lost or name in sel.repositories):
                continue
            if name not in sel.repositories and (fresh or (target != NO_ID and is_recent(target))):
                # a push (or cross-repository mount) may be on its way: keep the link and its blob
                busy = True
                if target != NO_ID:
                    fresh_targets.add(target)
                continue
            links.append(LayerLinkAction(name, link_digest))
        for upload in sorted(repo.uploads):
            old_enough = sel.gc and sel.uploads_older_than is not None and (
                upload.started_at is None or upload.started_at < now - sel.uploads_older_than)
            if name in sel.repositories or old_enough:
                uploads.append(UploadAction(name, upload.upload_id, upload.size))
            else:
                busy = True
        # an emptied repository goes only when nothing recent is on its way into it
        left_empty = not outcome.remaining and len(outcome.removed_tags) == len(repo.tags) and not busy
        if name in sel.repositories or (sel.gc and left_empty and not sel.keep_empty_repos):
            repositories.append(name)

    blobs: List[BlobAction] = []
    count = graph.repo_count
    candidates = set(freed_candidates)
    if sel.gc:
        candidates.update(graph.orphans())
    for b in sorted(candidates, key=lambda i: store.digest(i)):
        if not store.stored[b]:
            continue
        if count[b] - lost_need.get(b, 0) > 0:
            continue  # another repository (or a remaining revision) still needs it
        if is_recent(b) or b in fresh_targets:
            kept_blobs.add(b)
            continue
        blobs.append(BlobAction(store.digest(b), store.sizes[b], store.mtimes[b]))
    for b in kept_blobs:
        kept_count += 1
        kept_bytes += store.sizes[b]

    return DeletionPlan(
        command=command,
        tags=tuple(sorted(tags)),
        history=tuple(sorted(history, key=lambda h: (h.repo, h.tag, str(h.digest)))),
        manifests=tuple(manifests),
        layer_links=tuple(links),
        blobs=tuple(blobs),
        uploads=tuple(uploads),
        repositories=tuple(sorted(repositories)),
        kept_recent=(kept_count, kept_bytes),
    )


def revalidate(plan: DeletionPlan, graph: Graph) -> Tuple[DeletionPlan, int]:
    """The part of a saved plan that is still safe on the tree as it is now, and how many actions were
    dropped. Used by `resume`: whatever happened since, a manifest a remaining tag reaches, a link its
    repository still needs, or a blob some remaining revision needs is never removed."""
    store = graph.store
    removed_tags: Dict[str, Set[str]] = {}
    for t in plan.tags:
        removed_tags.setdefault(t.repo, set()).add(t.tag)
    planned: Dict[str, Set[int]] = {}
    for m in plan.manifests:
        planned.setdefault(m.repo, set()).add(store.lookup(m.digest))
    still_needed = bytearray(len(store))
    safe_manifests = []
    needs_after: Dict[str, Set[int]] = {}
    reachable_now: Dict[str, Set[int]] = {}
    for name, rg in graph.repos.items():
        repo = rg.repo
        roots = [info.current for t, info in repo.tags.items()
                 if t not in removed_tags.get(name, ()) and info.current != NO_ID]
        roots += [r for r in repo.revisions if r not in planned.get(name, ())]
        reachable = reachable_now[name] = graph.reach(rg, roots)
        going = planned.get(name, set()) - reachable
        remaining = set(repo.revisions) - going
        after = graph.needed_by(repo, remaining)
        needs_after[name] = after
        for b in after:
            still_needed[b] = 1
    for m in plan.manifests:
        rg = graph.repos.get(m.repo)
        blob_id = store.lookup(m.digest)
        if rg is None or blob_id not in rg.repo.revisions:
            safe_manifests.append(m)  # already gone: the executor's removal is a no-op
            continue
        if blob_id not in reachable_now[m.repo]:
            safe_manifests.append(m)
    links = []
    for x in plan.layer_links:
        rg = graph.repos.get(x.repo)
        target = NO_ID
        if rg is not None:
            target = rg.repo.aliases.get(x.digest, NO_ID) if x.digest.algorithm != "sha256" else store.lookup(x.digest)
        if target == NO_ID or target not in needs_after.get(x.repo, set()):
            links.append(x)
    blobs = [b for b in plan.blobs if store.lookup(b.digest) == NO_ID or not still_needed[store.lookup(b.digest)]]
    # a repository's reserved directories go only if nothing outside the plan lives there now
    repositories = []
    for name in plan.repositories:
        rg = graph.repos.get(name)
        if rg is None:
            repositories.append(name)
            continue
        unplanned_revs = set(rg.repo.revisions) - planned.get(name, set())
        unplanned_tags = set(rg.repo.tags) - removed_tags.get(name, set())
        if not unplanned_revs and not unplanned_tags:
            repositories.append(name)
    kept = plan._replace(manifests=tuple(safe_manifests), layer_links=tuple(links), blobs=tuple(blobs),
                         repositories=tuple(repositories))
    dropped = (len(plan.manifests) - len(safe_manifests) + len(plan.layer_links) - len(links)
               + len(plan.blobs) - len(blobs) + len(plan.repositories) - len(repositories))
    return kept, dropped
