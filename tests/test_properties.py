"""Random registries (Hypothesis) against an independent model of what the graph must compute.

The model below is written from the definitions in `regprune/graph.py`'s docstring and reads only what
`synth.Reg` remembers having written (manifest documents, revisions, tags, alias links); it calls nothing
of regprune's but the scan and the reports it checks:

- a manifest's direct needs: its own blob, its config and layers (sha512 names resolved through the
  repository's alias links), the blobs of its children;
- a repository needs the direct needs of all its revisions, tagged or not;
- orphans: stored blobs no repository needs;
- reachable revisions: tags' current manifests, their children, referrers of reachable ones;
- an image's exclusive bytes: what removing its revision and the children no other revision of the
  repository reaches (tagged children staying) frees, every other revision of every repository staying;
- a repository's exclusive bytes: stored blobs it needs that no other repository needs.
"""

from __future__ import annotations

import tempfile
from typing import Dict, Set

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth import Reg, canonical

import regprune.model
from regprune import report
from regprune.model import NO_ID
from regprune.scan import ScanOptions, scan
from regprune.storage import LocalStorage
from regprune.store_access import open_store

REPOS = ("a", "b/c", "lib.x/y-z")
TAGS = ("latest", "v1", "v2", "sha256-x.sig")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------- generating
def build(data, root: str) -> Reg:
    """A random registry: shared layers, images (Docker and OCI), indexes (nested too), referrers,
    tags pointed and moved, untagged revisions, the same manifest in several repositories, orphan
    blobs, layers pushed by sha512, revision links removed (leaving index children and tags that name
    a manifest which is no revision)."""
    draw = data.draw
    reg = Reg(root)
    layers = [bytes([65 + i]) * draw(st.integers(1, 300), label="layer size") for i in range(draw(st.integers(1, 6)))]
    repos = draw(st.lists(st.sampled_from(REPOS), min_size=1, max_size=3, unique=True), label="repos")
    maybe_tag = st.one_of(st.none(), st.sampled_from(TAGS))
    for step in range(draw(st.integers(1, 14), label="steps")):
        repo = draw(st.sampled_from(repos))
        revisions = list(reg.revisions.get(repo, ()))
        op = draw(st.sampled_from(["image", "image", "index", "artifact", "tag", "untag", "orphan", "sha512",
                                   "unlink"]))
        if op in ("index", "artifact", "tag", "unlink") and not revisions:
            op = "image"
        if op == "image":
            picked = draw(st.lists(st.integers(0, len(layers) - 1), min_size=1, max_size=3, unique=True))
            label = draw(st.integers(0, 2))  # equal label and layers in two repositories: one manifest
            reg.image(repo, tag=draw(maybe_tag), layers=[layers[i] for i in picked],
                      config=canonical({"label": label, "layers": picked}), oci=draw(st.booleans()))
        elif op == "index":
            children = draw(st.lists(st.sampled_from(revisions), min_size=1, max_size=3, unique=True))
            reg.index(repo, draw(maybe_tag), children=children, oci=draw(st.booleans()))
        elif op == "artifact":
            reg.artifact(repo, draw(st.sampled_from(revisions)), tag=draw(maybe_tag),
                         payload=b"signature %d" % draw(st.integers(0, 2)))
        elif op == "tag":
            reg.tag(repo, draw(st.sampled_from(TAGS)), draw(st.sampled_from(revisions)))
        elif op == "untag" and reg.tags.get(repo):
            reg.untag(repo, draw(st.sampled_from(sorted(reg.tags[repo]))))
        elif op == "orphan":
            reg.blob(b"orphan %d" % step)
        elif op == "sha512":
            _, d512 = reg.sha512_layer(repo, draw(st.sampled_from(layers)))
            reg.image(repo, tag=draw(maybe_tag), layers=[d512], config=canonical({"sha512": d512}))
        elif op == "unlink":  # the HTTP delete's first step: children and tags may now name a non-revision
            reg.unlink_revision(repo, draw(st.sampled_from(revisions)))
    return reg


# ------------------------------------------------------------------------------------------- the model
class Model:
    def __init__(self, reg: Reg) -> None:
        self.reg = reg
        self.stored: Set[str] = set(reg.content)
        self.repos = {repo: set(revs) for repo, revs in reg.revisions.items()}

    def size(self, blobs) -> int:
        return sum(len(self.reg.content[b]) for b in blobs if b in self.stored)

    def direct(self, repo: str, manifest: str) -> Set[str]:
        blobs, children, _ = self.reg.references(manifest)
        out = {manifest} | set(children)
        for b in blobs:
            target = b if b.startswith("sha256:") else self.reg.aliases.get(repo, {}).get(b)
            if target is not None:
                out.add(target)
        return out

    def needs(self, repo: str, revisions=None) -> Set[str]:
        out: Set[str] = set()
        for rev in self.repos[repo] if revisions is None else revisions:
            out |= self.direct(repo, rev)
        return out

    def needed(self, without: Dict[str, Set[str]] = None) -> Set[str]:
        without = without or {}
        out: Set[str] = set()
        for repo, revs in self.repos.items():
            out |= self.needs(repo, revs - without.get(repo, set()))
        return out

    def children(self, repo: str, rev: str) -> Set[str]:
        return set(self.reg.references(rev)[1]) & self.repos[repo]

    def parents(self, repo: str, rev: str) -> Set[str]:
        return {p for p in self.repos[repo] if rev in self.reg.references(p)[1]}

    def tagged(self, repo: str) -> Set[str]:
        return set(self.reg.tags.get(repo, {}).values())

    def reachable(self, repo: str) -> Set[str]:
        revs = self.repos[repo]
        seen: Set[str] = set()
        todo = [d for d in self.tagged(repo) if d in revs]
        while todo:
            rev = todo.pop()
            if rev in seen:
                continue
            seen.add(rev)
            todo += self.children(repo, rev)
            todo += [r for r in revs if self.reg.references(r)[2] == rev]
        return seen

    def closure(self, repo: str, root: str) -> Set[str]:
        seen, todo = set(), [root]
        while todo:
            rev = todo.pop()
            if rev not in seen:
                seen.add(rev)
                todo += self.children(repo, rev)
        return seen

    def removal(self, repo: str, root: str) -> Set[str]:
        removed = self.closure(repo, root)
        while True:
            keep = {r for r in removed if r != root
                    and (r in self.tagged(repo) or self.parents(repo, r) - removed)}
            if not keep:
                return removed
            removed -= keep

    def roots(self, repo: str) -> Set[str]:
        return {r for r in self.repos[repo] if r in self.tagged(repo) or not self.parents(repo, r)}


def scanned(data, reg: Reg):
    return open_store(str(reg.root), workers=data.draw(st.sampled_from([1, 3, 16]), label="workers"),
                      read_all_links=data.draw(st.booleans(), label="read_all_links"))


def names(graph, ids) -> Set[str]:
    return {str(graph.store.digest(i)) for i in ids}


# ------------------------------------------------------------------------------------------ properties
@SETTINGS
@given(st.data())
def test_orphans_are_stored_blobs_no_revision_needs(data):
    with tempfile.TemporaryDirectory() as tmp:
        reg = build(data, tmp)
        model = Model(reg)
        graph = scanned(data, reg).graph
        assert {f.code for f in graph.all_findings()} <= {"index-child-missing", "tag-target-missing"}
        assert names(graph, graph.orphans()) == model.stored - model.needed()
        assert report.du(graph)["orphans"] == {"count": len(model.stored - model.needed()),
                                               "bytes": model.size(model.stored - model.needed())}


@SETTINGS
@given(st.data())
def test_nothing_reachable_from_a_tag_is_orphan_or_untagged(data):
    with tempfile.TemporaryDirectory() as tmp:
        reg = build(data, tmp)
        model = Model(reg)
        graph = scanned(data, reg).graph
        orphans = names(graph, graph.orphans())
        freed_by_untagged = names(graph, graph.untagged_freed())
        kept = set()
        for repo in model.repos:
            reachable = model.reachable(repo)
            assert names(graph, graph.repos[repo].untagged) == model.repos[repo] - reachable
            kept |= model.needs(repo, reachable)
        assert not kept & orphans
        assert not kept & freed_by_untagged
        untagged_needs = set()
        for repo in model.repos:
            untagged_needs |= model.needs(repo, model.repos[repo] - model.reachable(repo))
        assert freed_by_untagged == (untagged_needs - kept) & model.stored


@SETTINGS
@given(st.data())
def test_image_exclusive_bytes_are_what_removing_it_frees(data):
    with tempfile.TemporaryDirectory() as tmp:
        reg = build(data, tmp)
        model = Model(reg)
        opened = scanned(data, reg)
        rows = report.ls(opened.graph, opened.storage)["images"]
        assert {(r["repository"], r["digest"]) for r in rows} == {
            (repo, rev) for repo in model.repos for rev in model.roots(repo)}
        everything = model.needed()
        for row in rows:
            repo, root = row["repository"], row["digest"]
            assert row["bytes"] == model.size(model.needs(repo, model.closure(repo, root)))
            after = model.needed(without={repo: model.removal(repo, root)})
            assert row["exclusive_bytes"] == model.size(everything - after), row


@SETTINGS
@given(st.data())
def test_repository_exclusive_bytes_are_blobs_only_it_needs(data):
    with tempfile.TemporaryDirectory() as tmp:
        reg = build(data, tmp)
        model = Model(reg)
        rows = {r["name"]: r for r in report.du(scanned(data, reg).graph)["repositories"]}
        assert set(rows) == set(model.repos)
        for repo in model.repos:
            mine = model.needs(repo)
            others = set()
            for other in model.repos:
                if other != repo:
                    others |= model.needs(other)
            assert rows[repo]["bytes"] == model.size(mine)
            assert rows[repo]["exclusive_bytes"] == model.size(mine - others)
            assert rows[repo]["manifests"] == len(model.repos[repo])
            assert rows[repo]["untagged"] == len(model.repos[repo] - model.reachable(repo))


def by_digest(store) -> dict:
    """Everything a store holds, with blob ids replaced by digests (ids depend on the order of discovery)."""
    d = store.digest

    def ds(ids):
        return tuple(str(d(i)) if i != NO_ID else None for i in ids)

    blobs = {str(d(i)): (store.sizes[i], store.mtimes[i], store.stored[i]) for i in range(len(store))}
    manifests = {str(d(i)): n._replace(config=ds([n.config]), refs=ds(n.refs), children=ds(n.children),
                                       subject=ds([n.subject]), foreign=ds(n.foreign))
                 for i, n in store.manifests.items()}
    repos = {}
    for name, repo in store.repositories.items():
        links = sorted((str(digest), mtime) for digest, _, mtime in store.layer_links(repo))
        repos[name] = (repo.has_layers, repo.has_manifests, {str(d(i)): t for i, t in repo.revisions.items()},
                       {t: (ds([i.current]), i.mtime, ds(i.history)) for t, i in repo.tags.items()}, links,
                       {a: str(d(i)) for a, i in repo.aliases.items()}, sorted(repo.uploads))
    return {"blobs": blobs, "manifests": manifests, "repos": repos, "pull_through_cache": store.pull_through_cache,
            "unreadable": {str(d(i)): p for i, p in store.unreadable_manifests.items()},
            "findings": sorted(store.findings, key=repr)}


@SETTINGS
@given(st.data())
def test_a_scan_split_over_processes_finds_what_one_process_finds(data):
    with tempfile.TemporaryDirectory() as tmp:
        reg = build(data, tmp)
        root = str(reg.root)
        options = ScanOptions(workers=4, read_all_links=data.draw(st.booleans(), label="read_all_links"),
                              tag_history=data.draw(st.booleans(), label="tag_history"))
        one = by_digest(scan(LocalStorage(root), root, options._replace(processes=1)))
        with pytest.MonkeyPatch.context() as mp:  # small pieces: a shard crosses in many of each kind
            mp.setattr(regprune.model, "BLOB_PART", data.draw(st.integers(1, 8), label="digests per piece"))
            mp.setattr(regprune.model, "PART", data.draw(st.integers(1, 3), label="items per piece"))
            for processes in (2, 3):
                assert by_digest(scan(LocalStorage(root), root, options._replace(processes=processes))) == one
