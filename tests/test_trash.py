"""`--trash` and `regprune trash list|restore|empty` on synthetic trees (tests/synth.py).

The invariants, for a multi-arch delete, a repository delete, `gc`, `untagged` and `prune`:

- a `--trash` run leaves the registry's part of the tree exactly as the same run without `--trash` does,
  and its trash folder holds exactly the files that run removes (same relative paths, bytes, modes and
  mtimes);
- `trash restore` gives back the tree as it was before the run (directory mtimes and regprune's own
  folder aside), and the run's trash folder is gone;
- a crash injected at every mutation of a `--trash` run leaves a consistent tree that `resume` finishes
  into the uninterrupted run's tree and trash; a crash at every mutation of a restore leaves a consistent
  tree that a second `trash restore` finishes;
- `trash empty` frees exactly the bytes `trash list` shows, and touches nothing of the registry's part.

Refusals: another filesystem, a path taken since, an image whose blob a later run removed, an unfinished
run or restore; exit codes and one-line messages as documented.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from crash_helpers import (
    BLOBS,
    OWN,
    REPOS,
    Crash,
    Tree,
    age_tree,
    comparable,
    crash_at,
    docker_part,
    plan_sets,
    run_cli,
    run_jobs,
)
from synth import Reg, sha256

import regprune.cli
import regprune.render
import regprune.scan
from fixtures import registry_kit as kit
from regprune import deletion, journal, layout, trash
from regprune.storage import LocalStorage, StorageError
from regprune.store_access import open_store

COMMON = ["--yes", "--grace", "0s", "--force"]
OPS: Dict[str, List[str]] = {
    "multiarch": ["delete", "lib/app:multi"],
    "repository": ["delete", "tools/ci"],
    "gc": ["gc", "--uploads-older-than", "0s"],
    "untagged": ["untagged"],
    "prune": ["prune", "lib/app", "--keep-last", "1"],
}


@pytest.fixture(autouse=True)
def one_scan_process(monkeypatch):
    """Scan without forking helpers in this process: the same scan, faster on tiny trees."""
    monkeypatch.setattr(regprune.scan, "default_processes", lambda: 1)


def build_tree(root: Path) -> Reg:
    """What each run removes: a multi-arch index with a referrer, a repository holding a nested one (with
    an upload), untagged images, orphans, a sha512 alias link, stale tag history, an old upload, an emptied
    repository."""
    reg = Reg(root)
    kids = [reg.image("lib/app", layers=[b"base", f"{arch} layer".encode()], config=f'{{"a":"{arch}"}}'.encode())
            for arch in ("amd64", "arm64")]
    index = reg.index("lib/app", "multi", children=kids)
    reg.artifact("lib/app", subject=index, payload=b"an sbom of multi")
    old = reg.image("lib/app", "v1", layers=[b"base", b"v0 layer"])
    reg.image("lib/app", "v1", layers=[b"base", b"v1 layer"])  # v1 moves on: `old` is untagged
    reg.image("lib/app", "v2", layers=[b"base", b"v2 layer"])
    reg.image("lib/app", layers=[b"base", b"untagged layer"])
    stale = reg.image("lib/app", "v3", layers=[b"base", b"v3 old layer"])
    reg.image("lib/app", "v3", layers=[b"base", b"v3 layer"])
    reg.unlink_revision("lib/app", stale)  # v3's history names a revision that is gone
    assert old in reg.revisions["lib/app"]
    reg.image("other", "1", layers=[b"base", b"arm64 layer"])  # shares a child's layer
    reg.image("tools/ci", "latest", layers=[b"base", b"ci layer"])
    reg.image("tools/ci", layers=[b"base", b"ci untagged layer"])
    reg.upload("tools/ci", "upload-ci", b"half a layer")
    reg.image("tools/ci/runner", "latest", layers=[b"base", b"runner layer"])
    reg.blob(b"an orphan")
    reg.layer("lib/app", b"uploaded, never used")
    reg.sha512_layer("lib/app", b"uploaded by sha512, never used")
    reg.upload("lib/app", "upload-old", b"abandoned")
    legacy = reg.image("legacy", "0.9", layers=[b"base", b"legacy layer"])
    reg.untag("legacy", "0.9")
    reg.unlink_revision("legacy", legacy)
    age_tree(root)
    return reg


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trash") / "base"
    build_tree(root)
    assert Tree(root).problems() == []
    return root


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def cli(root, *args: str) -> Tuple[int, str, str]:
    """`regprune ARGS --root ROOT` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            regprune.cli.main([*args, "--root", str(root)])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def cli_json(root, *args: str) -> dict:
    code, out, err = cli(root, *args, "--json") if "--json" not in args else cli(root, *args)
    assert code == 0, err
    return json.loads(out)


def the_run(root) -> journal.Run:
    runs = journal.all_runs(LocalStorage(str(root)))
    assert len(runs) >= 1
    return runs[-1]


def trash_content(root) -> dict:
    """The single trash folder's entries, by path inside it (directory mtimes aside)."""
    folders = os.listdir(Path(root, layout.TRASH))
    assert len(folders) == 1, folders
    snap = kit.tree_snapshot(Path(root, layout.TRASH, folders[0]))
    return {rel: (e.kind, None, None, None, e.mode) if e.kind == "dir" else tuple(e)
            for rel, e in snap.items() if rel != "."}


def gone_files(before: dict, after: dict) -> dict:
    return {rel: tuple(e) for rel, e in before.items() if rel not in after and e.kind == "file"}


def files_of(content: dict) -> dict:
    return {rel: e for rel, e in content.items() if e[0] == "file"}


def total_file_bytes(root) -> int:
    """Every file's bytes, the journal's and the lock's aside (they grow by a line or a time stamp)."""
    return sum(e.size for rel, e in kit.tree_snapshot(root).items()
               if e.kind == "file" and not rel.startswith(layout.RUNS + "/") and rel != layout.LOCK)


def assert_consistent(root) -> None:
    assert deletion.consistent(open_store(str(root)).graph)
    assert Tree(root).problems() == []


# ------------------------------------------------------------------------------------------- layout
def test_trash_paths_are_validated():
    rel = f"{BLOBS}/ab/{'ab' * 32}/data"
    assert layout.TrashRun("20260101T000000Z-gc-abcdef").path() == "regprune/trash/20260101T000000Z-gc-abcdef"
    assert layout.TrashEntry("r1", rel).path() == f"regprune/trash/r1/{rel}"
    assert layout.TrashEntry("r1", layout.V2).path() == "regprune/trash/r1/docker/registry/v2"
    for bad_rel in ("", "docker", "docker/registry", f"{layout.V2}/../x", f"{layout.V2}//x", f"{layout.V2}/./x",
                    "regprune/runs/x.json", f"/{layout.V2}/x", f"{layout.V2}x"):
        with pytest.raises(layout.InvalidName):
            layout.TrashEntry("r1", bad_rel).path()
    for bad_id in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(layout.InvalidName):
            layout.TrashRun(bad_id).path()


# ------------------------------------------------------------------------------------------ storage
def test_rename_moves_keeps_mtime_and_mode_and_refuses_to_overwrite(tmp_path):
    root = tmp_path / "root"
    src_dir = root / "a" / "b"
    src_dir.mkdir(parents=True)
    os.chmod(src_dir, 0o750)
    (src_dir / "f").write_bytes(b"data")
    os.utime(src_dir / "f", (1_000_000, 1_000_000))
    storage = LocalStorage(str(root))
    assert storage.rename("a/b/f", "t/x/a/b/f") is True
    moved = root / "t" / "x" / "a" / "b" / "f"
    assert moved.read_bytes() == b"data" and moved.stat().st_mtime == 1_000_000
    assert (moved.parent.stat().st_mode & 0o777) == 0o750  # the parent made like the source's own
    assert storage.rename("a/b/f", "t/x/a/b/f") is False  # already gone: done
    (src_dir / "g").write_bytes(b"other")
    (moved.parent / "g").write_bytes(b"taken")
    with pytest.raises(StorageError, match="already exists"):
        storage.rename("a/b/g", "t/x/a/b/g")
    assert (src_dir / "g").read_bytes() == b"other" and (moved.parent / "g").read_bytes() == b"taken"
    os.symlink(tmp_path, root / "link")  # never through a symbolic link
    with pytest.raises(StorageError, match="symbolic links are not followed"):
        storage.rename("a/b/g", "link/elsewhere/g")
    assert not (tmp_path / "elsewhere").exists()


def test_rename_across_filesystems_fails_clearly(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"x")

    def exdev(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "rename", exdev)
    with pytest.raises(StorageError, match="on another filesystem") as info:
        LocalStorage(str(root)).rename("a/f", "b/f")
    assert str(root / "a" / "f") in str(info.value)
    assert (root / "a" / "f").exists()


# ------------------------------------------------------------------------------ the main invariant
@pytest.mark.parametrize("name", sorted(OPS))
def test_trash_run_is_the_run_and_restore_undoes_it(name, base, tmp_path):
    plain, trashed = copy(base, tmp_path / "plain"), copy(base, tmp_path / "trashed")
    before = kit.tree_snapshot(trashed)
    expected = cli_json(plain, *OPS[name], *COMMON)
    result = cli_json(trashed, *OPS[name], *COMMON, "--trash")
    assert plan_sets(result) == plan_sets(expected) and any(plan_sets(expected).values())
    assert expected["trash"] is False and "trash_run" not in expected
    assert result["trash"] is True and result["bytes_freed"] == expected["bytes_freed"]
    run_id = result["trash_run"]
    after = kit.tree_snapshot(trashed)
    assert comparable(after) == comparable(kit.tree_snapshot(plain))  # the registry sees the same tree
    content = trash_content(trashed)
    assert files_of(content) == gone_files(before, after)  # exactly what went, bytes, modes and mtimes kept
    assert_consistent(trashed)
    run = the_run(trashed)
    assert (run.run_id, run.state, run.trash) == (run_id, journal.DONE, journal.TRASHED)

    listed = cli_json(trashed, "trash", "list")["runs"]
    plan = run.plan
    assert listed == [{"id": run_id, "created": run.created, "command": run.command, "tags": len(plan.tags),
                       "manifests": len(plan.manifests), "blobs": len(plan.blobs),
                       "bytes": sum(e[1] for e in files_of(content).values())}]
    du = cli_json(trashed, "du")
    assert du["trash"] == {"count": 1, "bytes": listed[0]["bytes"]}

    code, out, err = cli(trashed, "trash", "restore", run_id, "--yes")
    assert code == 0, err
    assert f"restored {run_id}" in out and err.strip() == regprune.cli.render.RESTART_REMINDER
    restored = kit.tree_snapshot(trashed)
    assert comparable(restored) == comparable(before), kit.snapshot_diff(comparable(before), comparable(restored))
    assert not Path(trashed, layout.TrashRun(run_id).path()).exists()
    assert the_run(trashed).trash == journal.RESTORED
    assert cli_json(trashed, "trash", "list") == {"runs": []}
    assert cli_json(trashed, "du")["trash"] == {"count": 0, "bytes": 0}
    history = cli_json(trashed, "history")["runs"]
    assert [(r["id"], r["trash"]) for r in history] == [(run_id, "restored")]


def test_dry_run_with_trash_changes_nothing(base, tmp_path):
    root = copy(base, tmp_path / "root")
    before = kit.tree_snapshot(root)
    plan = cli_json(root, *OPS["multiarch"], "--grace", "0s", "--force", "--dry-run", "--trash")
    assert plan["dry_run"] is True and plan["trash"] is True and plan["manifests"]
    assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == []
    code, out, _ = cli(root, *OPS["multiarch"], "--grace", "0s", "--force", "--dry-run", "--trash")
    assert code == 0 and "regprune trash empty" in out
    assert f"would move {regprune.render.size(plan['bytes_freed'])} to the trash: 1 tag(s)" in out


# ------------------------------------------------------------------------------------------ crashes
def run_trash_in_process(root: Path, argv: List[str], k=None) -> int:
    """The CLI in this process with mutation k replaced by an exception; how many mutations it attempted."""
    with crash_at(k) as counter:
        try:
            code, _, err = cli(root, *argv, *COMMON, "--trash")
        except Crash:
            assert k is not None and counter["n"] >= k
        else:
            assert code == 0 and (k is None or counter["n"] < k), err
    return counter["n"]


@pytest.mark.parametrize("name", ["multiarch", "repository", "gc"])
def test_crash_at_every_mutation_of_a_trash_run_then_resume(name, base, tmp_path):
    ref_root = copy(base, tmp_path / "ref")
    before = comparable(kit.tree_snapshot(ref_root))
    n = run_trash_in_process(ref_root, OPS[name])
    assert n > 10
    ref_tree, ref_trash = comparable(kit.tree_snapshot(ref_root)), trash_content(ref_root)
    kept = Tree(ref_root)
    for k in range(1, n + 1):
        root = copy(base, tmp_path / f"k{k}")
        run_trash_in_process(root, OPS[name], k)
        assert_consistent(root)
        tree = Tree(root)
        assert kept.revision_set() <= tree.revision_set() and kept.tag_set() <= tree.tag_set()
        assert journal.unfinished(LocalStorage(str(root))) is not None
        if k == n // 2:  # the trash of an unfinished run can be listed, not restored nor emptied
            assert [r["id"] for r in cli_json(root, "trash", "list")["runs"]] == [the_run(root).run_id]
            code, _, err = cli(root, "trash", "restore", the_run(root).run_id, "--yes")
            assert code == 3 and "regprune resume" in err, err
            code, _, err = cli(root, "trash", "empty", "--yes")
            assert code == 3 and "regprune resume" in err, err
        code, _, err = cli(root, "resume", "--yes")
        assert code == 0, err
        assert comparable(kit.tree_snapshot(root)) == ref_tree
        assert trash_content(root) == ref_trash, k
        run = the_run(root)
        assert (run.state, run.trash) == (journal.DONE, journal.TRASHED)
        if k in (1, n // 2, n):
            code, _, err = cli(root, "trash", "restore", run.run_id, "--yes")
            assert code == 0, err
            assert comparable(kit.tree_snapshot(root)) == before


@pytest.mark.parametrize("name", ["multiarch", "repository", "gc"])
def test_crash_at_every_mutation_of_a_restore_then_restore_again(name, base, tmp_path):
    trashed = copy(base, tmp_path / "trashed")
    before = comparable(kit.tree_snapshot(trashed))
    run_trash_in_process(trashed, OPS[name])
    run_id = the_run(trashed).run_id
    storage = LocalStorage(str(trashed))
    ref = copy(trashed, tmp_path / "ref")
    with crash_at(None) as counter:
        trash.restore(LocalStorage(str(ref)), journal.load(storage, run_id), workers=1)
    n = counter["n"]
    assert n > 5 and comparable(kit.tree_snapshot(ref)) == before
    for k in range(1, n + 1):
        root = copy(trashed, tmp_path / f"k{k}")
        with crash_at(k), pytest.raises(Crash):
            trash.restore(LocalStorage(str(root)), journal.load(LocalStorage(str(root)), run_id), workers=1)
        assert_consistent(root)
        assert the_run(root).trash == journal.RESTORING
        if k == 1:  # an interrupted restore blocks the destructive commands, and names itself
            code, _, err = cli(root, *OPS["gc"], *COMMON)
            assert code == 3 and f"regprune trash restore {run_id}" in err, err
            assert [r["id"] for r in cli_json(root, "trash", "list")["runs"]] == [run_id]
        code, _, err = cli(root, "trash", "restore", run_id, "--yes")
        assert code == 0, err
        assert comparable(kit.tree_snapshot(root)) == before, k
        assert the_run(root).trash == journal.RESTORED
        assert not Path(root, layout.TrashRun(run_id).path()).exists()


def test_hard_kill_at_every_mutation_of_a_trash_run_then_resume(base, tmp_path):
    ref_root = copy(base, tmp_path / "ref")
    n = run_trash_in_process(ref_root, OPS["multiarch"])
    ref_tree, ref_trash = comparable(kit.tree_snapshot(ref_root)), trash_content(ref_root)
    roots = {k: copy(base, tmp_path / f"k{k}") for k in range(1, n + 1)}
    argv = [*OPS["multiarch"], *COMMON, "--trash"]
    results = run_jobs([("kill", k, [*argv, "--root", str(roots[k])]) for k in roots], tmp_path / "kill")
    assert [(k, code) for k, (code, _) in zip(roots, results) if code != 137] == []
    for root in roots.values():
        assert_consistent(root)
    results = run_jobs([("run", None, ["resume", "--yes", "--root", str(roots[k])]) for k in roots],
                       tmp_path / "resume")
    assert [(k, out) for k, (code, out) in zip(roots, results) if code != 0] == []
    for k, root in roots.items():
        assert comparable(kit.tree_snapshot(root)) == ref_tree, k
        assert trash_content(root) == ref_trash, k


# ---------------------------------------------------------------------------------------- refusals
def test_other_filesystem_refuses_and_touches_nothing(base, tmp_path, monkeypatch):
    root = copy(base, tmp_path / "root")
    before = kit.tree_snapshot(root)
    real = LocalStorage.filesystem_id
    monkeypatch.setattr(LocalStorage, "filesystem_id",
                        lambda self, rel: real(self, rel) + (rel != layout.V2))  # regprune/ elsewhere
    for extra in (["--dry-run"], ["--yes"]):
        code, out, err = cli(root, *OPS["multiarch"], "--grace", "0s", "--force", "--trash", *extra)
        assert code == 3, err
        assert err == (f"Error: {root}/{layout.OWN_DIR if extra == ['--yes'] else ''}".rstrip("/")
                       + f": not on the filesystem of {root}/{layout.V2}, so --trash cannot move entries there "
                       "by renaming them; run without --trash\n")
        assert out == ""
        assert docker_part(kit.tree_snapshot(root)) == docker_part(before)
        assert journal.all_runs(LocalStorage(str(root))) == []
    code, _, err = cli(root, *OPS["multiarch"], *COMMON)  # without --trash: no such check
    assert code == 0, err


def test_resume_of_a_trash_run_checks_the_filesystem_again(base, tmp_path, monkeypatch):
    root = copy(base, tmp_path / "root")
    run_trash_in_process(root, OPS["multiarch"], 5)
    real = LocalStorage.filesystem_id
    monkeypatch.setattr(LocalStorage, "filesystem_id", lambda self, rel: real(self, rel) + (rel != layout.V2))
    code, _, err = cli(root, "resume", "--yes")
    assert code == 3 and "--trash cannot move entries there" in err, err
    monkeypatch.setattr(LocalStorage, "filesystem_id", real)
    code, _, err = cli(root, "resume", "--yes")
    assert code == 0, err


def test_restore_refuses_when_a_path_was_taken_since(base, tmp_path):
    reg_root = copy(base, tmp_path / "root")
    run_trash_in_process(reg_root, OPS["multiarch"])
    run_id = the_run(reg_root).run_id
    reg = Reg.__new__(Reg)  # only its path helpers, on this copy
    reg.root, reg.v2 = reg_root, reg_root / layout.V2
    current = reg.tag_path("lib/app", "multi") / "current" / "link"
    current.parent.mkdir(parents=True)
    current.write_bytes(sha256(b"pushed again since").encode())  # the tag was pushed again meanwhile
    before = kit.tree_snapshot(reg_root)
    code, out, err = cli(reg_root, "trash", "restore", run_id, "--yes")
    assert code == 3, err
    rel = f"{REPOS}/lib/app/_manifests/tags/multi/current/link"
    assert err == (f"Error: {rel}: taken since {run_id} moved it to the trash; restoring would overwrite it "
                   "(move it away first)\n")
    after = kit.tree_snapshot(reg_root)
    assert {k: v for k, v in after.items() if k != f"{OWN}/lock"} == {
        k: v for k, v in before.items() if k != f"{OWN}/lock"}  # nothing moved, journal untouched
    current.unlink()
    current.parent.rmdir()
    code, _, err = cli(reg_root, "trash", "restore", run_id, "--yes")
    assert code == 0, err


def test_restore_refuses_an_image_whose_blob_a_later_run_removed(tmp_path):
    reg = Reg(tmp_path / "root")
    reg.image("lib/x", "a", layers=[b"shared base", b"a layer"])
    reg.image("lib/x", "b", layers=[b"shared base", b"b layer"])
    age_tree(reg.root)
    before = comparable(kit.tree_snapshot(reg.root))
    code, _, err = cli(reg.root, "delete", "lib/x:a", *COMMON, "--trash")
    assert code == 0, err
    run_id = the_run(reg.root).run_id
    code, _, err = cli(reg.root, "delete", "lib/x:b", *COMMON)  # for good: the shared base goes
    assert code == 0, err
    code, _, err = cli(reg.root, "trash", "restore", run_id, "--yes")
    assert code == 3, err
    image = reg.tags["lib/x"]["a"]
    assert err == (f"Error: lib/x@{image}: needs blob {sha256(b'shared base')}, which is gone: restoring {run_id} "
                   "would bring back an image that cannot be pulled; restore the later run that moved it first, "
                   "if it is in the trash (override: --force)\n")
    runs = {r.command: (r.run_id, r.trash) for r in journal.all_runs(LocalStorage(str(reg.root)))}
    assert runs == {"delete lib/x:a": (run_id, journal.TRASHED), "delete lib/x:b": (runs["delete lib/x:b"][0], None)}
    code, _, err = cli(reg.root, "trash", "restore", run_id, "--yes", "--force")
    assert code == 0, err
    graph = open_store(str(reg.root)).graph
    assert {f.code for f in graph.all_findings() if f.severity == "damage"} == {"blob-missing"}
    assert before != comparable(kit.tree_snapshot(reg.root))


def test_restore_keeps_what_was_pushed_again_identical(tmp_path):
    reg = Reg(tmp_path / "root")
    a = reg.image("lib/x", "a", layers=[b"shared base", b"a layer"])
    reg.image("lib/x", "b", layers=[b"shared base", b"b layer"])
    age_tree(reg.root)
    code, _, err = cli(reg.root, "delete", "lib/x:a", *COMMON, "--trash")
    assert code == 0, err
    run_id = the_run(reg.root).run_id
    layer = reg.blob_path(sha256(b"a layer"))
    assert not layer.exists()
    c = reg.image("lib/x", "c", layers=[b"shared base", b"a layer"])  # pushed since: the same layer, linked again
    pushed_again = kit.tree_snapshot(reg.root)
    code, _, err = cli(reg.root, "trash", "restore", run_id, "--yes")
    assert code == 0, err
    assert_consistent(reg.root)
    tree = Tree(reg.root)
    assert tree.repos["lib/x"].tags == {"a": a, "b": reg.tags["lib/x"]["b"], "c": c}
    rel = str(layer.relative_to(reg.root))
    assert kit.tree_snapshot(reg.root)[rel] == pushed_again[rel]  # the store's copy stays as it is
    assert not Path(reg.root, layout.TrashRun(run_id).path()).exists()


def test_restore_and_empty_need_yes_without_a_terminal(base, tmp_path):
    root = copy(base, tmp_path / "root")
    run_trash_in_process(root, OPS["gc"])
    run_id = the_run(root).run_id
    before = kit.tree_snapshot(root)
    proc = run_cli(root, "trash", "restore", run_id)
    assert proc.returncode == 2 and proc.stderr == "Error: not a terminal: add --yes to restore for real\n"
    proc = run_cli(root, "trash", "empty")
    assert proc.returncode == 2 and proc.stderr == "Error: not a terminal: add --yes to empty the trash for real\n"
    after = kit.tree_snapshot(root)
    assert {k: v for k, v in after.items() if k != f"{OWN}/lock"} == {
        k: v for k, v in before.items() if k != f"{OWN}/lock"}


def test_unknown_and_finished_runs(base, tmp_path):
    root = copy(base, tmp_path / "root")
    code, _, err = cli(root, "trash", "restore", "20260101T000000Z-gc-000000", "--yes")
    assert code == 2 and "no such run" in err, err
    code, _, err = cli(root, "trash", "restore", "../../etc", "--yes")
    assert code == 2 and "no such run" in err, err
    code, _, err = cli(root, *OPS["gc"], *COMMON)  # for good
    plain = the_run(root).run_id
    code, _, err = cli(root, "trash", "restore", plain, "--yes")
    assert code == 2 and "not a --trash run" in err, err
    code, _, err = cli(root, "trash", "empty", plain, "--yes")
    assert code == 2 and "not a --trash run" in err, err
    code, _, err = cli(root, "trash", "empty", plain, "--older-than", "1d", "--yes")
    assert code == 2 and err == "Error: give RUN_ID or --older-than, not both\n", err
    code, _, err = cli(root, "trash", "empty", "--older-than", "soon", "--yes")
    assert code == 2 and "--older-than" in err, err


# ------------------------------------------------------------------------------------------ emptying
def test_empty_frees_exactly_the_bytes_listed(base, tmp_path):
    root = copy(base, tmp_path / "root")
    run_trash_in_process(root, OPS["multiarch"])
    time.sleep(1.05)  # run ids start with the second they were made: keep the two in order
    run_trash_in_process(root, OPS["gc"])
    first, second = [r.run_id for r in journal.all_runs(LocalStorage(str(root)))]
    listed = cli_json(root, "trash", "list")["runs"]
    assert [r["id"] for r in listed] == [first, second]
    assert cli_json(root, "du")["trash"] == {"count": 2, "bytes": sum(r["bytes"] for r in listed)}
    registry_part = docker_part(kit.tree_snapshot(root))

    code, out, _ = cli(root, "trash", "empty", "--older-than", "1h", "--yes")
    assert code == 0 and out == "nothing to empty\n"
    storage = LocalStorage(str(root))
    assert [t.run.run_id for t in trash.select_for_empty(storage, None, 3600, now=time.time() + 7200)] == [
        first, second]

    size_before = total_file_bytes(root)
    code, out, err = cli(root, "trash", "empty", first, "--yes")
    assert code == 0, err
    freed = size_before - total_file_bytes(root)
    assert freed == listed[0]["bytes"] > 0
    assert out.splitlines()[-1] == f"freed {regprune.render.size(freed)}: 1 run(s) emptied"
    assert not Path(root, layout.TrashRun(first).path()).exists()
    assert [r["id"] for r in cli_json(root, "trash", "list")["runs"]] == [second]
    assert journal.load(storage, first).trash == journal.EMPTIED
    assert journal.load(storage, first).trash_freed == freed
    code, _, err = cli(root, "trash", "restore", first, "--yes")
    assert code == 2 and "this run's trash was emptied" in err, err

    size_before = total_file_bytes(root)
    code, out, err = cli(root, "trash", "empty", "--yes")  # every run left
    assert code == 0, err
    assert size_before - total_file_bytes(root) == listed[1]["bytes"]
    assert cli_json(root, "trash", "list") == {"runs": []}
    assert cli_json(root, "du")["trash"] == {"count": 0, "bytes": 0}
    assert docker_part(kit.tree_snapshot(root)) == registry_part  # emptying never touches the store
    assert [r["trash"] for r in cli_json(root, "history")["runs"]] == ["emptied", "emptied"]
    code, out, _ = cli(root, "trash", "empty", "--yes")
    assert code == 0 and out == "nothing to empty\n"


def test_an_interrupted_empty_finishes_when_run_again(base, tmp_path):
    root = copy(base, tmp_path / "root")
    run_trash_in_process(root, OPS["gc"])
    run_id = the_run(root).run_id
    listed = cli_json(root, "trash", "list")["runs"][0]["bytes"]
    size_before = total_file_bytes(root)
    storage = LocalStorage(str(root))
    with crash_at(4), pytest.raises(Crash):
        trash.empty(storage, trash.select_for_empty(storage, run_id, None))
    assert journal.load(storage, run_id).trash == journal.EMPTYING
    code, _, err = cli(root, "trash", "restore", run_id, "--yes")
    assert code == 2 and "is being emptied" in err, err
    code, _, err = cli(root, "trash", "empty", run_id, "--yes")
    assert code == 0, err
    assert size_before - total_file_bytes(root) == listed
    assert journal.load(storage, run_id).trash == journal.EMPTIED


# -------------------------------------------------------------------------------- check, du, history
def test_check_never_looks_into_regprunes_folder(base, tmp_path):
    root = copy(base, tmp_path / "root")
    clean = cli_json(root, "check")
    litter = Path(root, layout.TRASH, "20260101T000000Z-delete-abcdef", REPOS, "bad", "_manifests", "tags", "t",
                  "current")
    litter.mkdir(parents=True)
    (litter / "link").write_bytes(b"garbage")
    os.symlink("/etc", litter / "escape")
    (Path(root, OWN) / ".DS_Store").write_bytes(b"x")
    (Path(root, OWN, "trash", "not-a-run!")).mkdir()
    assert cli_json(root, "check") == clean
    du = cli_json(root, "du")
    assert du["trash"] == {"count": 1, "bytes": len(b"garbage")}
    assert du["findings"] == cli_json(copy(base, tmp_path / "clean"), "du")["findings"]
