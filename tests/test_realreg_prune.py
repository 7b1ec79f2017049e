"""`regprune prune` on trees the real registry 2.8 wrote, judged by the real registry.

The registry builds the tree (tags, multi-arch indexes, a blob shared with a repository outside the
selection, an untagged revision, images whose config `created` runs against their push order); the
tests then set each tag's push time through its current link's mtime, age every blob past the grace
window, and run a `--dry-run --json` (the tree stays byte-identical) and the real run (its JSON equals the
dry run's; what it removed, read from a tree diff, is exactly the plan). Exactly the expected tags go,
exactly the blobs only they needed disappear, the re-scanned tree is consistent, and a fresh registry
pulls every kept tag and none of the dropped ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Iterable, Set, Tuple

import pytest
from conftest import realreg_available
from crash_helpers import (
    REPOS,
    Tree,
    age_tree,
    assert_sorted,
    docker_part,
    plan_sets,
    pulls,
    removed_by_run,
    run_cli,
)

from fixtures import registry_kit as kit
from regprune import deletion
from regprune.store_access import open_store

realreg = pytest.mark.realreg
DAY = 86400.0

#: tag -> days since it was pushed, per repository
PUSHED = {
    "team/app": {"b1": 20, "b2": 18, "b3": 16, "b4": 14, "b5": 12, "latest": 12, "release": 19, "wip": 13},
    "team/multi": {"v1": 30, "v2": 25, "v3": 5, "latest": 5},
    "other/app": {"1.0": 40},
    "dated/app": {"c1": 1, "c2": 10, "c3": 5, "multi": 8},
}


def dated_image(layout: kit.OciLayout, layers, created: str, name: str,
                platform: Tuple[str, str] = ("linux", "amd64")) -> kit.Manifest:
    """An OCI image whose config says `created` (the kit's images all say 2024-01-01)."""
    config = kit.canonical_json({"architecture": platform[1], "os": platform[0], "created": created,
                                 "config": {"Labels": {"regprune.fixture": name}},
                                 "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}})
    config_digest = layout.add_blob(config)
    for x in layers:
        layout.add_blob(x.data)
    data = kit.canonical_json({
        "schemaVersion": 2, "mediaType": kit.OCI_MANIFEST,
        "config": {"mediaType": kit.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": kit.OCI_LAYER_GZIP, "digest": x.digest, "size": x.size} for x in layers]})
    layout.add_blob(data)
    return kit.Manifest(kind="image", media_type=kit.OCI_MANIFEST, data=data, config_digest=config_digest,
                        layer_digests=tuple(x.digest for x in layers),
                        platform={"os": platform[0], "architecture": platform[1]})


def build(server: kit.RegistryServer, work: Path) -> Dict[str, Dict[str, str]]:
    """Push everything; returns repo -> tag -> digest."""
    L = kit.OciLayout(work / "layout")
    base = kit.make_layer("prune-base", files=3)
    tags: Dict[str, Dict[str, str]] = {}

    def push(repo: str, m: kit.Manifest, tag: str) -> None:
        server.upload(L, m, repo, tag)
        tags.setdefault(repo, {})[tag] = m.digest

    app = {i: L.image([base, kit.make_layer(f"app-{i}")], name=f"app-{i}") for i in range(1, 6)}
    for i, m in app.items():
        push("team/app", m, f"b{i}")
    push("team/app", app[5], "latest")
    push("team/app", app[5], "release")  # the same manifest as b5 and latest, pushed long before them
    push("team/app", L.image([base, kit.make_layer("wip-0")], name="wip-0"), "wip")  # moved: stays untagged
    push("team/app", L.image([base, kit.make_layer("wip-1")], name="wip-1"), "wip")
    for v in (1, 2, 3):
        children = [L.image([base, kit.make_layer(f"multi-{v}-{arch}")], platform=("linux", arch),
                            name=f"multi-{v}-{arch}") for arch in ("amd64", "arm64")]
        push("team/multi", L.index(children), f"v{v}")
    push("team/multi", L.index([L.image([base, kit.make_layer(f"multi-3-{arch}")], platform=("linux", arch),
                                        name=f"multi-3-{arch}") for arch in ("amd64", "arm64")]), "latest")
    push("other/app", L.image([base, kit.make_layer("app-1")], name="other-1"), "1.0")  # shares b1's layer
    for tag, created in (("c1", "2024-03-01T00:00:00Z"), ("c2", "2024-05-01T00:00:00.5Z"),
                         ("c3", "2024-01-01T00:00:00+01:00")):
        push("dated/app", dated_image(L, [base, kit.make_layer(f"dated-{tag}")], created, tag), tag)
    children = [dated_image(L, [base, kit.make_layer("dated-multi-amd64")], "2024-02-01T00:00:00Z", "m-amd64"),
                dated_image(L, [base, kit.make_layer("dated-multi-arm64")], "2024-06-01T00:00:00Z", "m-arm64",
                            ("linux", "arm64"))]
    push("dated/app", L.index(children), "multi")  # dated by its newest child: 2024-06-01
    return tags


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not realreg_available():
        pytest.skip("needs docker-registry and skopeo")
    root = tmp_path_factory.mktemp("prune-scenario") / "root"
    work = tmp_path_factory.mktemp("prune-work")
    with kit.RegistryServer(root) as server:
        tags = build(server, work)
    return root, tags


@pytest.fixture
def store(built, tmp_path):
    """A private copy of the built tree: blobs aged 30 days, each tag's push time set from PUSHED."""
    src, tags = built
    root = tmp_path / "root"
    shutil.copytree(src, root, symlinks=True)
    age_tree(root)
    now = time.time()
    for repo, pushed in PUSHED.items():
        for tag, days in pushed.items():
            link = Path(root, REPOS, repo, "_manifests/tags", tag, "current/link")
            os.utime(link, (now - days * DAY, now - days * DAY))
    return root, tags


def prune(root, *args: str) -> Tuple[dict, dict, Tree]:
    """Dry run then real run of `prune ARGS`, with every check of the module docstring; returns the
    dry run's JSON, the real run's JSON and the tree as it was before."""
    before_tree = Tree(root)
    assert before_tree.problems() == []
    before = kit.tree_snapshot(root)

    dry = run_cli(root, "prune", *args, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True
    assert_sorted(plan)
    assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == [], "a dry run changed the tree"
    again = run_cli(root, "prune", *args, "--dry-run", "--json")
    assert again.stdout == dry.stdout  # deterministic

    real = run_cli(root, "prune", *args, "--yes", "--json")
    assert real.returncode == 0, real.stderr
    result = json.loads(real.stdout)
    assert result["dry_run"] is (not any(plan_sets(plan).values()))
    assert result.get("skipped", []) == []
    same = {k: v for k, v in result.items() if k not in ("dry_run", "skipped")}
    assert same == {k: v for k, v in plan.items() if k != "dry_run"}, "the real run differs from its dry run"

    after = kit.tree_snapshot(root)
    assert removed_by_run(before, after) == plan_sets(plan)
    assert deletion.consistent(open_store(str(root)).graph)
    assert Tree(root).problems() == []
    return plan, result, before_tree


def decisions(plan: dict) -> Dict[Tuple[str, str], str]:
    return {(d["repo"], d["tag"]): d["reason"] for d in plan["decisions"]}


def exclusive_of(tree: Tree, dropped: Dict[str, Iterable[str]]) -> Tuple[Set[Tuple[str, str]], Set[str]]:
    """(revisions removed, blobs only they needed), by the tests' own reader."""
    revisions = {(repo, rev) for repo, tags in dropped.items() for rev in tree.removal_for_tags(repo, tags)}
    return revisions, tree.exclusive(revisions)


@realreg
def test_keep_last_two_and_latest(store):
    root, tags = store
    plan, _, before = prune(root, "team/*", "--keep-last", "2", "--keep", "^latest$")

    assert plan["command"] == "prune team/* --keep-last 2 --keep '^latest$'"
    assert plan["policy"] == {"keep_last": 2, "keep": ["^latest$"], "only": None, "older_than": None,
                              "order": "pushed", "untagged": False, "selected": ["team/app", "team/multi"]}
    assert decisions(plan) == {
        ("team/app", "b1"): "drop: beyond last 2",
        ("team/app", "b2"): "drop: beyond last 2",
        ("team/app", "b3"): "drop: beyond last 2",
        ("team/app", "b4"): "drop: beyond last 2",
        ("team/app", "b5"): "keep: 1 of last 2",
        ("team/app", "latest"): "keep: matches ^latest$",
        ("team/app", "release"): "drop: beyond last 2",
        ("team/app", "wip"): "keep: 2 of last 2",
        ("team/multi", "latest"): "keep: matches ^latest$",
        ("team/multi", "v1"): "drop: beyond last 2",
        ("team/multi", "v2"): "keep: 2 of last 2",
        ("team/multi", "v3"): "keep: 1 of last 2",
    }
    dropped = {"team/app": ["b1", "b2", "b3", "b4", "release"], "team/multi": ["v1"]}
    assert plan_sets(plan)["tags"] == {(repo, t) for repo, ts in dropped.items() for t in ts}

    # `release` shares b5's manifest: dropping it frees nothing, and the plan says so
    rows = {(d["repo"], d["tag"]): d for d in plan["decisions"]}
    assert rows[("team/app", "release")]["same_manifest_as"] == ["b5", "latest"]
    assert rows[("team/app", "release")]["frees"] == 0 and rows[("team/app", "release")]["manifest_stays"]
    assert all(rows[(repo, t)]["frees"] > 0 for repo, ts in dropped.items() for t in ts if t != "release")

    revisions, exclusive = exclusive_of(before, dropped)
    assert plan_sets(plan)["manifests"] == revisions
    assert len(revisions) == 4 + 3  # b1..b4, and v1 with its two children
    assert plan_sets(plan)["blobs"] == exclusive and exclusive
    after = Tree(root)
    assert exclusive.isdisjoint(after.blobs)
    app1_layer = kit.make_layer("app-1").digest  # b1's own layer, which other/app also uses
    assert app1_layer in after.blobs and app1_layer not in exclusive
    assert before.untagged("team/app") == after.untagged("team/app") != set()  # no --untagged: wip-0 stays
    assert "other/app" in after.repos and after.repos["other/app"].tags == before.repos["other/app"].tags

    kept = after.tag_set()
    assert kept == before.tag_set() - plan_sets(plan)["tags"]
    gone = plan_sets(plan)["tags"] | plan_sets(plan)["manifests"]
    pulls(root, kept, gone)

    # the policy holds: applied again, it drops nothing
    again = run_cli(root, "prune", "team/*", "--keep-last", "2", "--keep", "^latest$", "--dry-run", "--json")
    assert not any(plan_sets(json.loads(again.stdout)).values())


@realreg
def test_order_created_with_older_than_and_untagged(store):
    root, tags = store
    # by push time c1 and c3 are the newest; by config `created` the index (newest child 2024-06) and c2.
    # Ages are measured the same way: with --order created, c1 (pushed yesterday) is as old as its config.
    by_push = json.loads(run_cli(root, "prune", "dated/*", "--keep-last", "2", "--dry-run", "--json").stdout)
    assert {t["tag"] for t in by_push["tags"]} == {"c2", "multi"}

    plan, _, before = prune(root, "dated/**", "team/app", "--keep-last", "2", "--order", "created",
                            "--older-than", "3d", "--untagged")
    assert decisions(plan) == {
        ("dated/app", "c1"): "drop: beyond last 2 and older than 3d",  # pushed yesterday, created 2024-03
        ("dated/app", "c2"): "keep: 2 of last 2",
        ("dated/app", "c3"): "drop: beyond last 2 and older than 3d",
        ("dated/app", "multi"): "keep: 1 of last 2",
        ("team/app", "b1"): "drop: beyond last 2 and older than 3d",
        ("team/app", "b2"): "drop: beyond last 2 and older than 3d",
        ("team/app", "b3"): "drop: beyond last 2 and older than 3d",
        ("team/app", "b4"): "drop: beyond last 2 and older than 3d",
        ("team/app", "b5"): "drop: beyond last 2 and older than 3d",
        ("team/app", "latest"): "drop: beyond last 2 and older than 3d",
        ("team/app", "release"): "keep: 2 of last 2",  # every config says 2024-01-01: ties go by name
        ("team/app", "wip"): "keep: 1 of last 2",
    }
    created = {(d["repo"], d["tag"]): d["created"] for d in plan["decisions"]}
    assert created[("dated/app", "multi")] == "2024-06-01T00:00:00Z"
    assert created[("dated/app", "c2")] == "2024-05-01T00:00:00.5Z"
    assert plan["every_tag_dropped"] == []

    dropped = {"dated/app": ["c1", "c3"], "team/app": ["b1", "b2", "b3", "b4", "b5", "latest"]}
    revisions, _ = exclusive_of(before, dropped)
    wip0 = before.untagged("team/app")
    assert len(wip0) == 1
    assert plan_sets(plan)["manifests"] == revisions | {("team/app", rev) for rev in wip0}  # --untagged
    revisions |= {("team/app", rev) for rev in wip0}
    assert plan_sets(plan)["blobs"] == before.exclusive(revisions)
    assert tags["team/app"]["b5"] not in {rev for _, rev in revisions}  # release keeps it
    rows = {(d["repo"], d["tag"]): d for d in plan["decisions"]}
    assert rows[("team/app", "latest")]["same_manifest_as"] == ["release"]
    assert rows[("team/app", "b5")]["same_manifest_as"] == ["release"]
    after = Tree(root)
    assert after.untagged("team/app") == set()
    pulls(root, after.tag_set(), plan_sets(plan)["tags"] | plan_sets(plan)["manifests"])


@realreg
def test_dropping_every_tag_is_flagged_and_still_needs_yes(store):
    root, _ = store
    before = kit.tree_snapshot(root)
    text = run_cli(root, "prune", "other/app", "--older-than", "30d", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert text.stdout.rstrip().splitlines()[-1] == "WARNING: the policy drops every tag of other/app"
    refused = run_cli(root, "prune", "other/app", "--older-than", "30d")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    missing = run_cli(root, "prune", "nothing/*", "--older-than", "30d", "--yes")
    assert missing.returncode == 2
    assert missing.stderr == f"Error: nothing/*: no repository matches this pattern in {root}\n"
    assert docker_part(kit.tree_snapshot(root)) == docker_part(before)
    plan, _, _ = prune(root, "other/app", "--older-than", "30d")
    assert plan["every_tag_dropped"] == ["other/app"]
    assert Tree(root).repos["other/app"].tags == {}
