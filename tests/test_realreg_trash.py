"""`--trash` and `regprune trash restore|empty` on trees the real registry 2.8 wrote, judged by the real
registry: after `delete --trash` of a multi-arch image it no longer pulls and every other image does; after
`trash restore` the tree is byte-identical to before (directory mtimes and regprune's own folder aside) and
the image pulls again; a restore crashed after k moves, re-run, ends the same; a `--trash` run killed after
k mutations and finished by `resume` ends like an uninterrupted one; `trash empty` frees exactly the bytes
`trash list` shows; a trash on another filesystem is refused before anything is touched.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from crash_helpers import (
    Crash,
    Tree,
    age_tree,
    assert_sorted,
    comparable,
    crash_at,
    docker_part,
    kill_at,
    plan_sets,
    pulls,
    removed_by_run,
    run_cli,
)

import regprune.cli
import regprune.scan
from fixtures import registry_kit as kit
from regprune import deletion, journal, layout, render, trash
from regprune.storage import LocalStorage
from regprune.store_access import open_store

realreg = pytest.mark.realreg
MULTIARCH = ["tools/ci/runner:latest", "team/web:stable"]


@pytest.fixture(autouse=True)
def one_scan_process(monkeypatch):
    monkeypatch.setattr(regprune.scan, "default_processes", lambda: 1)


@pytest.fixture
def demo(realreg_copy):
    """A private copy of the `demo` scenario, aged past every grace window."""
    root, expected = realreg_copy("demo")
    age_tree(root)
    return root, expected


def healthy(root) -> None:
    assert deletion.consistent(open_store(str(root)).graph)
    assert Tree(root).problems() == []
    proc = run_cli(root, "check")
    assert proc.returncode == 0, proc.stdout


def references(root) -> set:
    """Every tag, and every untagged revision (by digest): what the registry serves."""
    tree = Tree(root)
    return tree.tag_set() | {(name, rev) for name in tree.repos for rev in tree.untagged(name)}


def trash_folder(root, run_id: str) -> dict:
    snap = kit.tree_snapshot(Path(root, layout.TrashRun(run_id).path()))
    return {rel: (e.kind, None, None, None, e.mode) if e.kind == "dir" else tuple(e)
            for rel, e in snap.items() if rel != "."}


def file_bytes(root) -> int:
    """Every file's bytes but the journal's and the lock's (they grow by a time stamp)."""
    return sum(e.size for rel, e in kit.tree_snapshot(root).items()
               if e.kind == "file" and not rel.startswith(layout.RUNS + "/") and rel != layout.LOCK)


def trash_delete(root, ref: str) -> dict:
    """`delete REF --trash`: the dry run changes nothing, the real run removes exactly the plan from the
    registry's part of the tree; returns the real run's JSON."""
    before = kit.tree_snapshot(root)
    dry = run_cli(root, "delete", ref, "--grace", "0s", "--trash", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["trash"] is True and plan["dry_run"] is True
    assert_sorted(plan)
    assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == []
    real = run_cli(root, "delete", ref, "--grace", "0s", "--trash", "--yes", "--json")
    assert real.returncode == 0, real.stderr
    result = json.loads(real.stdout)
    assert result["trash"] is True and plan_sets(result) == plan_sets(plan)
    assert removed_by_run(before, kit.tree_snapshot(root)) == plan_sets(plan)
    return result


@realreg
@pytest.mark.parametrize("ref", MULTIARCH)
def test_delete_to_the_trash_then_restore(demo, ref):
    root, _ = demo
    before = kit.tree_snapshot(root)
    everything = references(root)

    result = trash_delete(root, ref)

    run_id = result["trash_run"]
    gone = {(t["repo"], t["tag"]) for t in result["tags"]} | {(m["repo"], m["digest"]) for m in result["manifests"]}
    assert gone and len(result["manifests"]) >= 2  # the index and its children (team/web: 1.0 stays)
    healthy(root)
    kept = references(root)
    assert kept == everything - gone
    pulls(root, kept, gone)
    listed = json.loads(run_cli(root, "trash", "list", "--json").stdout)["runs"]
    in_trash = trash_folder(root, run_id)
    assert listed == [{"id": run_id, "created": listed[0]["created"], "command": f"delete {ref}",
                       "tags": len(result["tags"]), "manifests": len(result["manifests"]),
                       "blobs": len(result["blobs"]),
                       "bytes": sum(e[1] for e in in_trash.values() if e[0] == "file")}]

    proc = run_cli(root, "trash", "restore", run_id, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == render.RESTART_REMINDER
    after = kit.tree_snapshot(root)
    assert comparable(after) == comparable(before), kit.snapshot_diff(comparable(before), comparable(after))[:10]
    assert not Path(root, layout.TrashRun(run_id).path()).exists()
    healthy(root)
    pulls(root, everything, ())  # the registry serves it again
    history = json.loads(run_cli(root, "history", "--json").stdout)["runs"]
    assert [(r["id"], r["trash"]) for r in history] == [(run_id, "restored")]


@realreg
def test_interrupted_restore_finishes_when_run_again(demo, tmp_path):
    import shutil

    root, _ = demo
    before = comparable(kit.tree_snapshot(root))
    everything = references(root)
    run_id = trash_delete(root, MULTIARCH[0])["trash_run"]
    ref = tmp_path / "ref"
    shutil.copytree(root, ref, symlinks=True)
    with crash_at(None) as counter:
        storage = LocalStorage(str(ref))
        trash.restore(storage, journal.load(storage, run_id), workers=1)
    n = counter["n"]
    assert n > 10 and comparable(kit.tree_snapshot(ref)) == before
    for k in (1, n // 2, n):
        crashed = tmp_path / f"k{k}"
        shutil.copytree(root, crashed, symlinks=True)
        storage = LocalStorage(str(crashed))
        with crash_at(k), pytest.raises(Crash):
            trash.restore(storage, journal.load(storage, run_id), workers=1)
        assert deletion.consistent(open_store(str(crashed)).graph) and Tree(crashed).problems() == []
        if k == n // 2:
            pulls(crashed, references(crashed), ())  # half restored: whatever is back pulls
        blocked = run_cli(crashed, "gc", "--yes", "--grace", "0s")
        assert blocked.returncode == 3 and f"regprune trash restore {run_id}" in blocked.stderr, blocked.stderr
        proc = run_cli(crashed, "trash", "restore", run_id, "--yes")
        assert proc.returncode == 0, proc.stderr
        assert comparable(kit.tree_snapshot(crashed)) == before, k
        assert journal.load(storage, run_id).trash == journal.RESTORED
    pulls(crashed, everything, ())


@realreg
def test_killed_trash_run_resumed_ends_like_an_uninterrupted_one(demo, tmp_path):
    import shutil

    root, _ = demo
    before = comparable(kit.tree_snapshot(root))
    argv = ["delete", MULTIARCH[1], "--yes", "--grace", "0s", "--trash"]
    ref = tmp_path / "ref"
    shutil.copytree(root, ref, symlinks=True)
    with crash_at(None) as counter:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as done:
            regprune.cli.main([*argv, "--root", str(ref)])
        assert done.value.code == 0, err.getvalue()
    n = counter["n"]
    ref_run = journal.all_runs(LocalStorage(str(ref)))[0].run_id
    ref_tree, ref_trash = comparable(kit.tree_snapshot(ref)), trash_folder(ref, ref_run)
    gone = {(t.repo, t.tag) for t in journal.load(LocalStorage(str(ref)), ref_run).plan.tags}
    for k in (1, n // 2, n):
        killed = tmp_path / f"k{k}"
        shutil.copytree(root, killed, symlinks=True)
        assert kill_at(killed, k, *argv).returncode == 137
        assert deletion.consistent(open_store(str(killed)).graph) and Tree(killed).problems() == []
        proc = run_cli(killed, "resume", "--yes")
        assert proc.returncode == 0, proc.stderr
        run = journal.all_runs(LocalStorage(str(killed)))[0]
        assert (run.state, run.trash) == (journal.DONE, journal.TRASHED)
        assert comparable(kit.tree_snapshot(killed)) == ref_tree
        assert trash_folder(killed, run.run_id) == ref_trash
    pulls(killed, references(killed), gone)
    proc = run_cli(killed, "trash", "restore", run.run_id, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert comparable(kit.tree_snapshot(killed)) == before


@realreg
def test_empty_frees_exactly_the_bytes_listed(demo):
    root, _ = demo
    run_id = trash_delete(root, MULTIARCH[0])["trash_run"]
    gc = run_cli(root, "gc", "--yes", "--grace", "0s", "--uploads-older-than", "0s", "--trash", "--json")
    assert gc.returncode == 0, gc.stderr
    listed = {r["id"]: r["bytes"] for r in json.loads(run_cli(root, "trash", "list", "--json").stdout)["runs"]}
    assert len(listed) == 2 and all(listed.values())
    du = json.loads(run_cli(root, "du", "--json").stdout)
    assert du["trash"] == {"count": 2, "bytes": sum(listed.values())}
    registry_part = docker_part(kit.tree_snapshot(root))
    size = file_bytes(root)
    proc = run_cli(root, "trash", "empty", run_id, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert size - file_bytes(root) == listed[run_id]
    assert proc.stdout.splitlines()[-1] == f"freed {render.size(listed[run_id])}: 1 run(s) emptied"
    assert docker_part(kit.tree_snapshot(root)) == registry_part
    size = file_bytes(root)
    proc = run_cli(root, "trash", "empty", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert size - file_bytes(root) == sum(listed.values()) - listed[run_id]
    assert json.loads(run_cli(root, "du", "--json").stdout)["trash"] == {"count": 0, "bytes": 0}
    assert docker_part(kit.tree_snapshot(root)) == registry_part
    healthy(root)


@realreg
def test_trash_on_another_filesystem_is_refused(demo, monkeypatch):
    root, _ = demo
    before = kit.tree_snapshot(root)
    real = LocalStorage.filesystem_id
    monkeypatch.setattr(LocalStorage, "filesystem_id",
                        lambda self, rel: real(self, rel) + (rel != layout.V2))  # as if regprune/ were mounted
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as done:
        regprune.cli.main(["delete", MULTIARCH[0], "--yes", "--grace", "0s", "--trash", "--root", str(root)])
    assert done.value.code == 3
    assert err.getvalue() == (f"Error: {root}/{layout.OWN_DIR}: not on the filesystem of {root}/{layout.V2}, so "
                              "--trash cannot move entries there by renaming them; run without --trash\n")
    assert docker_part(kit.tree_snapshot(root)) == docker_part(before)
    assert not os.path.exists(Path(root, layout.RUNS)) or not os.listdir(Path(root, layout.RUNS))
