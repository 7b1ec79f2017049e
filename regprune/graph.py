"""The reference graph of a scanned store, and the sizes the reports are made of.

Edges: tag -> manifest; image manifest -> config and layers; index -> child manifests (only children
that are revisions of the same repository are followed: the registry cannot serve any other); a
manifest's `subject` is a reverse edge (the referrers of a manifest), never a reference that keeps the
subject alive. Every manifest is also a blob. Definitions (the README repeats them):

- a manifest's *direct needs*: its own blob, its config and layers (sha384/sha512 names resolved through
  the repository's alias links), and the blobs of its children;
- a repository *needs* the direct needs of all its revisions, tagged or not (an untagged revision is
  still pullable by digest);
- *orphans*: stored blobs no repository needs (what the registry's `garbage-collect` without
  `--delete-untagged` would delete);
- *reachable* revisions: tags' current manifests, their children (recursively), and referrers of
  reachable manifests (recursively); *untagged*: every other revision;
- an image's *bytes*: the distinct stored blobs its manifest and its children (recursively) need;
- an image's *exclusive bytes*: what deleting its revision and the children no other revision of the
  repository reaches would free, every other revision of every repository staying;
- a repository's *exclusive bytes*: stored blobs it needs that no other repository needs.
"""

from __future__ import annotations

from array import array
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

from . import layout
from . import manifest as manifest_mod
from .digest import Digest
from .findings import Finding
from .model import NO_ID, ManifestNode, Repository, Store

_MAX_COUNT = 0xFFFF


class RepoGraph:
    """One repository's revisions with the edges between them."""

    __slots__ = ("repo", "parents", "referrers", "reachable", "untagged", "tagged", "needed")

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.parents: Dict[int, List[int]] = {}  # child revision -> revisions listing it
        self.referrers: Dict[int, List[int]] = {}  # subject -> revisions whose subject it is
        self.reachable: Set[int] = set()
        self.untagged: Set[int] = set()
        self.tagged: Dict[int, List[str]] = {}  # revision -> tags whose current link names it
        self.needed = array("l")  # blobs the repository's revisions need, sorted


class Graph:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.findings: List[Finding] = []
        n = len(store)
        self.repo_count = array("H", bytes(2 * n))  # repositories needing each blob
        self.kept = bytearray(n)  # needed by a reachable revision somewhere
        self.untagged_need = bytearray(n)  # needed by an untagged revision somewhere
        self.repos: Dict[str, RepoGraph] = {}
        for name in sorted(store.repositories):
            self.repos[name] = self._build_repo(store.repositories[name])

    # ------------------------------------------------------------------------------------- building
    def direct_needs(self, repo: Repository, blob_id: int, report: bool = False) -> Iterator[int]:
        yield blob_id
        node = self.store.manifests.get(blob_id)
        if node is None:
            return
        yield from node.refs
        for alias in node.aliases:
            target = repo.aliases.get(alias, NO_ID)
            if target != NO_ID:
                yield target
            elif report:
                self.findings.append(Finding("alias-unresolved", self._revision_path(repo, blob_id), str(alias)))
        yield from node.children

    def children_in_repo(self, repo: Repository, blob_id: int) -> Iterable[int]:
        node = self.store.manifests.get(blob_id)
        if node is None or not node.children:
            return ()
        return [c for c in node.children if c in repo.revisions]

    def _build_repo(self, repo: Repository) -> RepoGraph:
        store = self.store
        rg = RepoGraph(repo)
        self._report_repo_findings(repo)
        for tag in sorted(repo.tags):
            current = repo.tags[tag].current
            if current != NO_ID:
                rg.tagged.setdefault(current, []).append(tag)
        for rev in repo.revisions:
            node = store.manifests.get(rev)
            if node is None:
                continue
            for child in node.children:
                if child in repo.revisions:
                    rg.parents.setdefault(child, []).append(rev)
            if node.subject != NO_ID:
                rg.referrers.setdefault(node.subject, []).append(rev)

        reachable = rg.reachable = self.reach(rg, rg.tagged)
        rg.untagged = set(repo.revisions) - reachable

        # one pass over every revision's needs: the repository's, the reachable ones', the untagged ones'
        needed: Set[int] = set()
        kept, untagged_need = self.kept, self.untagged_need
        for rev in repo.revisions:
            flags = kept if rev in reachable else untagged_need
            for b in self.direct_needs(repo, rev, True):
                needed.add(b)
                flags[b] = 1
        count = self.repo_count
        for b in needed:
            if count[b] < _MAX_COUNT:
                count[b] += 1
        rg.needed = array("l", sorted(needed))  # kept compactly: du asks for it again per repository
        return rg

    def reach(self, rg: RepoGraph, roots: Iterable[int], exclude: Set[int] = frozenset()) -> Set[int]:
        """Revisions reachable from `roots` through children and referrers, never entering `exclude`."""
        repo = rg.repo
        seen: Set[int] = set(exclude)
        stack = [r for r in roots if r in repo.revisions]
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            stack.extend(self.children_in_repo(repo, rev))
            stack.extend(rg.referrers.get(rev, ()))
        return seen - exclude

    def needed_by(self, repo: Repository, revisions: Iterable[int], report: bool = False) -> Set[int]:
        out: Set[int] = set()
        for rev in revisions:
            out.update(self.direct_needs(repo, rev, report))
        return out

    # -------------------------------------------------------------------------------------- findings
    def _report_repo_findings(self, repo: Repository) -> None:
        store = self.store
        add = self.findings.append
        name = repo.name
        if repo.has_manifests and not repo.has_layers:
            add(Finding("repository-invisible-2.8", layout.RepoDir(name).path(), name))
        if repo.has_layers and not repo.has_manifests:
            add(Finding("repository-invisible-3", layout.RepoDir(name).path(), name))
        unreadable, manifests, stored = store.unreadable_manifests, store.manifests, store.stored
        for rev in repo.revisions:
            # the healthy case costs no path and no Digest: they are made only for a finding
            problem = unreadable.get(rev)
            if problem is not None:
                code, _, detail = problem.partition("\t")
                add(Finding(code, layout.BlobData(store.digest(rev)).path() if code != "revision-blob-missing"
                            else self._revision_path(repo, rev), str(store.digest(rev)), detail))
                continue
            node = manifests.get(rev)
            if node is None:
                continue
            if node.kind == manifest_mod.UNKNOWN:
                add(Finding("manifest-unknown-type", self._revision_path(repo, rev), node.media_type or "(none)"))
            elif node.kind == manifest_mod.SCHEMA1:
                add(Finding("schema1", self._revision_path(repo, rev), str(store.digest(rev))))
            refs: Iterable[int] = node.refs
            if node.aliases:
                refs = list(refs) + [repo.aliases[a] for a in node.aliases if a in repo.aliases]
            for ref in refs:
                if not stored[ref] and ref not in node.foreign:
                    add(Finding("blob-missing", layout.BlobData(store.digest(ref)).path(), str(store.digest(ref)),
                                f"needed by {name}@{store.digest(rev)}"))
            for child in node.children:
                if child not in repo.revisions:
                    add(Finding("index-child-missing", self._revision_path(repo, rev), str(store.digest(child)),
                                f"child of {name}@{store.digest(rev)}"))
        for tag in sorted(repo.tags):
            current = repo.tags[tag].current
            if current != NO_ID and current not in repo.revisions:
                add(Finding("tag-target-missing", layout.TagCurrentLink(name, tag).path(),
                            str(store.digest(current))))
        packed = repo.layer_links if store.layer_links_checked else b""  # du lists, never opens, them
        for i in range(0, len(packed), 32):
            link = store.lookup_raw(bytes(packed[i:i + 32]))
            if link == NO_ID or not store.stored[link]:
                digest = Digest.from_raw(bytes(packed[i:i + 32]))
                add(Finding("layer-link-dangling", layout.LayerLink(name, digest).path(), str(digest)))
        for alias, target in sorted(repo.aliases.items(), key=lambda kv: str(kv[0])):
            if store.layer_links_checked and not store.stored[target]:
                add(Finding("layer-link-dangling", layout.LayerLink(name, alias).path(), str(alias)))

    def _revision_path(self, repo: Repository, rev: int) -> str:
        return layout.RevisionLink(repo.name, self.store.digest(rev)).path()

    def all_findings(self) -> List[Finding]:
        return sorted(set(self.store.findings + self.findings), key=Finding.sort_key)

    # ------------------------------------------------------------------------------------- measuring
    def size_of(self, blobs: Iterable[int]) -> int:
        sizes, stored = self.store.sizes, self.store.stored
        return sum(sizes[b] for b in blobs if stored[b])

    def orphans(self) -> List[int]:
        count, stored = self.repo_count, self.store.stored
        return [b for b in range(len(stored)) if stored[b] and not count[b]]

    def untagged_freed(self) -> List[int]:
        """Blobs that removing every untagged revision would free."""
        stored, kept, need = self.store.stored, self.kept, self.untagged_need
        return [b for b in range(len(stored)) if stored[b] and need[b] and not kept[b]]

    def repo_sizes(self, name: str) -> Tuple[int, int]:
        """(bytes, exclusive bytes) of a repository."""
        needed = self.repos[name].needed
        count = self.repo_count
        return self.size_of(needed), self.size_of(b for b in needed if count[b] == 1)

    def image_closure(self, rg: RepoGraph, root: int) -> Set[int]:
        """The revision and its children in the repository, recursively."""
        seen: Set[int] = set()
        stack = [root]
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            stack.extend(self.children_in_repo(rg.repo, rev))
        return seen

    def image_removal(self, rg: RepoGraph, root: int) -> Set[int]:
        """Revisions deleting `root` alone removes: it, and its children that no revision outside the
        image reaches (a child tagged on its own is an image of its own and stays)."""
        removed = self.image_closure(rg, root)
        changed = True
        while changed:
            changed = False
            for rev in list(removed):
                if rev == root:
                    continue
                if rev in rg.tagged or any(p not in removed for p in rg.parents.get(rev, ())):
                    removed.discard(rev)
                    changed = True
        return removed

    def repo_need_counts(self, rg: RepoGraph) -> Dict[int, int]:
        """How many revisions of the repository directly need each blob."""
        counts: Dict[int, int] = {}
        for rev in rg.repo.revisions:
            for b in set(self.direct_needs(rg.repo, rev)):
                counts[b] = counts.get(b, 0) + 1
        return counts

    def image_sizes(self, rg: RepoGraph, root: int, need_counts: Dict[int, int]) -> Tuple[int, int]:
        """(bytes, exclusive bytes) of the image whose revision is `root`."""
        repo = rg.repo
        closure = self.image_closure(rg, root)
        total = self.size_of(self.needed_by(repo, closure))
        removed_counts: Dict[int, int] = {}
        for rev in self.image_removal(rg, root):
            for b in set(self.direct_needs(repo, rev)):
                removed_counts[b] = removed_counts.get(b, 0) + 1
        count = self.repo_count
        freed = [b for b, n in removed_counts.items() if n == need_counts.get(b, 0) and count[b] == 1]
        return total, self.size_of(freed)

    def image_roots(self, rg: RepoGraph) -> List[int]:
        """Revisions shown as images: tagged ones and those that are no other revision's child."""
        return [rev for rev in rg.repo.revisions if rev in rg.tagged or rev not in rg.parents]

    def node(self, blob_id: int) -> Optional[ManifestNode]:
        return self.store.manifests.get(blob_id)
