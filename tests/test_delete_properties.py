"""Hypothesis: random registries (tests/synth.py) and random sequences of `delete repo:tag`,
`delete repo@digest`, `delete repo`, `untagged` and `gc`, run through the library with a grace of 0.
After every step, judged by the tests' own reader (`crash_helpers.Tree`, which parses manifests itself):
every remaining revision still has every blob, `_layers` link and child it needs, every tag still names a
revision, regprune's own re-scan finds the tree consistent, and the step removed what it should and
nothing that stays reachable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Set, Tuple

import pytest
from crash_helpers import OLD, Tree
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from synth import Reg

import regprune.scan
from fixtures.tree import set_tree_mtime
from regprune import deletion, refs
from regprune.errors import Refused
from regprune.graph import Graph
from regprune.plan import Selection
from regprune.safety import Overrides
from regprune.store_access import open_store

REPOSITORIES = ["app", "lib/app", "lib/app/sub", "tools"]  # nested names on purpose
LAYERS = [b"base os", b"runtime", b"app one", b"app two", b"tool", b"data"]
TAGS = ["v1", "v2", "latest"]
#: regprune removes a manifest that an untagged index staying in the repository still lists as a child
#: (see test_deleting_a_tag_keeps_what_an_untagged_index_lists): until that is fixed, steps that would hit
#: it are skipped. Set False once fixed.
UNTAGGED_PARENT_BUG = False


@pytest.fixture(autouse=True, scope="module")
def one_scan_process():
    """Scan without forking helpers in this process: the same scan, faster on tiny trees."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(regprune.scan, "default_processes", lambda: 1)
        yield


def build(data: st.DataObject, root: Path) -> None:
    reg = Reg(root)
    for repo in data.draw(st.lists(st.sampled_from(REPOSITORIES), min_size=1, max_size=3, unique=True), "repos"):
        images: List[str] = []
        manifests: List[str] = []
        for _ in range(data.draw(st.integers(1, 5))):
            kind = data.draw(st.sampled_from(["image", "image", "index", "artifact", "alias"]))
            tag = data.draw(st.sampled_from([None, None, *TAGS]))
            if kind == "index" and images:
                kids = data.draw(st.lists(st.sampled_from(images), min_size=1, max_size=3, unique=True))
                manifests.append(reg.index(repo, tag, children=kids, oci=data.draw(st.booleans())))
            elif kind == "artifact" and manifests:
                subject = data.draw(st.sampled_from(manifests))
                manifests.append(reg.artifact(repo, subject, tag, payload=f"about {subject}".encode()))
            else:
                layers: list = data.draw(st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3, unique=True))
                if kind == "alias":  # a layer named by its sha512 digest, through the repository's alias link
                    layers.append(reg.sha512_layer(repo, b"sha512 " + layers[0])[1])
                images.append(reg.image(repo, tag, layers=layers, oci=data.draw(st.booleans())))
                manifests.append(images[-1])
        if data.draw(st.booleans()):
            reg.layer(repo, b"uploaded, never used in " + repo.encode())
        if data.draw(st.booleans()):
            reg.upload(repo, "upload-1", b"half")
    for i in range(data.draw(st.integers(0, 2))):
        reg.blob(b"orphan %d" % i)
    set_tree_mtime(root, OLD)


def run(root: Path, select: Callable[[Graph], Selection], command: str) -> None:
    """One destructive run through the library: locked session, plan (grace 0), journaled execution."""
    with deletion.session(str(root), lock=True) as opened:
        plan = deletion.plan(opened, select(opened.graph), command, 0.0, Overrides(force=True))
        deletion.execute(opened, plan, ["regprune", command], workers=2)


def fixed(selection: Selection) -> Callable[[Graph], Selection]:
    return lambda _graph: selection


def refs_of(*texts: str) -> Callable[[Graph], Selection]:
    return lambda graph: refs.select(graph, list(texts))


def needed_links_ok(tree: Tree) -> List[str]:
    """After gc: every `_layers` link names a blob its repository needs."""
    bad = []
    for name, repo in tree.repos.items():
        needed: Set[str] = set()
        for rev in repo.revisions:
            needed |= tree.needs(name, rev)[0]
        for link, target in repo.layer_links.items():
            if (target if not link.startswith("sha256:") else link) not in needed:
                bad.append(f"{name}: _layers {link}")
    return bad


def unchanged_elsewhere(before: Tree, after: Tree, repos: Set[str]) -> None:
    """Repositories outside `repos` keep their tags and revisions (gc may drop one that had neither)."""
    for name, repo in before.repos.items():
        if name in repos:
            continue
        if name not in after.repos:
            assert not repo.tags and not repo.revisions, name
            continue
        assert after.repos[name].tags == repo.tags
        assert after.repos[name].revisions == repo.revisions


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_deletions_never_lose_a_needed_blob(data):
    with tempfile.TemporaryDirectory(prefix="regprune-prop-") as tmp:
        root = Path(tmp) / "store"
        build(data, root)
        assert Tree(root).problems() == []
        for _ in range(data.draw(st.integers(1, 4), "steps")):
            before = Tree(root)
            if not before.repos:
                break
            op = data.draw(st.sampled_from(["tag", "digest", "repo", "untagged", "gc"]), "op")
            tags: List[Tuple[str, str]] = sorted(before.tag_set())
            revisions: List[Tuple[str, str]] = sorted(before.revision_set())
            refused: Optional[str] = None
            if op == "tag" and tags:
                repo, tag = data.draw(st.sampled_from(tags))
                expected = before.removal(repo, {tag}, ())
                if UNTAGGED_PARENT_BUG and expected != before.removal(repo, {tag}, (), keep_listed=False):
                    event("skipped: the known bug (a child of an untagged index)")
                    continue
                run(root, refs_of(f"{repo}:{tag}"), f"delete {repo}:{tag}")
                after = Tree(root)
                assert (repo, tag) not in after.tag_set()
                assert before.tag_set() - {(repo, tag)} <= after.tag_set()
                assert before.tagged_reach(repo, {tag}) <= after.repos[repo].revisions
                assert after.repos[repo].revisions == before.repos[repo].revisions - expected
                unchanged_elsewhere(before, after, {repo})
            elif op == "digest" and revisions:
                repo, rev = data.draw(st.sampled_from(revisions))
                pointing = {t for t, d in before.repos[repo].tags.items() if d == rev}
                others = [d for t, d in before.repos[repo].tags.items() if t not in pointing]
                listed = any(rev in before.children(p) for p in before.reach(repo, others, exclude={rev}))
                must_refuse = bool(before.listed_by_staying(repo, (), {rev}))
                if UNTAGGED_PARENT_BUG and must_refuse != listed:
                    event("skipped: the known bug (a child of an untagged index)")
                    continue
                try:
                    run(root, refs_of(f"{repo}@{rev}"), f"delete {repo}@{rev}")
                except Refused as exc:
                    refused = str(exc)
                after = Tree(root)
                if refused:  # only ever because a manifest that stays lists it as a child
                    assert must_refuse, refused
                    assert after.repos[repo].tags == before.repos[repo].tags
                    assert after.repos[repo].revisions == before.repos[repo].revisions
                else:
                    assert not must_refuse
                    assert not pointing & set(after.repos[repo].tags)
                    expected = before.removal(repo, (), {rev})
                    assert rev in expected
                    assert after.repos[repo].revisions == before.repos[repo].revisions - expected
                unchanged_elsewhere(before, after, {repo})
            elif op == "repo":
                repo = data.draw(st.sampled_from(sorted(before.repos)))
                run(root, refs_of(repo), f"delete {repo}")
                after = Tree(root)
                assert repo not in after.repos
                unchanged_elsewhere(before, after, {repo})
            elif op == "untagged":
                chosen = set(data.draw(st.lists(st.sampled_from(sorted(before.repos)), unique=True)))
                chosen = chosen or set(before.repos)
                run(root, fixed(Selection(untagged=chosen)), "untagged")
                after = Tree(root)
                for name in chosen:
                    assert after.repos[name].revisions == before.tagged_reach(name)
                    assert after.repos[name].tags == before.repos[name].tags
                unchanged_elsewhere(before, after, chosen)
            else:
                run(root, fixed(Selection(gc=True, uploads_older_than=0.0)), "gc")
                after = Tree(root)
                assert after.orphans() == set()
                assert needed_links_ok(after) == []
                for repo in after.repos.values():
                    assert not repo.uploads
                    assert all(h <= repo.revisions for h in repo.history.values())
                    assert repo.tags or repo.revisions  # emptied repositories go
                unchanged_elsewhere(before, after, set())
            assert after.problems() == [], (op, refused)
            assert deletion.consistent(open_store(str(root)).graph)


def test_deleting_a_tag_keeps_what_an_untagged_index_lists(tmp_path):
    reg = Reg(tmp_path / "store")
    amd = reg.image("app", "amd64", layers=[b"base os", b"amd64"])
    arm = reg.image("app", "arm64", layers=[b"base os", b"arm64"])
    index = reg.index("app", children=[amd, arm])  # untagged (its tag moved on), still pullable by digest
    set_tree_mtime(reg.root, OLD)
    run(reg.root, refs_of("app:amd64"), "delete app:amd64")
    tree = Tree(reg.root)
    assert index in tree.repos["app"].revisions
    assert tree.problems() == []
    assert deletion.consistent(open_store(str(reg.root)).graph)


def test_deleting_a_child_of_an_untagged_index_by_digest_is_refused(tmp_path):
    reg = Reg(tmp_path / "store")
    amd = reg.image("app", "amd64", layers=[b"base os", b"amd64"])
    arm = reg.image("app", "arm64", layers=[b"base os", b"arm64"])
    reg.index("app", children=[amd, arm])
    set_tree_mtime(reg.root, OLD)
    with pytest.raises(Refused):
        run(reg.root, refs_of(f"app@{amd}"), f"delete app@{amd}")
