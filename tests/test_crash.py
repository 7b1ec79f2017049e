"""Crash safety: a failure injected at the k-th filesystem removal, for every k of three runs (a
multi-arch delete, a repository delete, a `gc`), as an exception in-process and as a hard kill
(`os._exit(137)`) of a CLI process. After each crash the tree is consistent and every remaining revision
still has its blobs, links and children; `regprune resume --yes` then ends in exactly the tree an
uninterrupted run leaves (directory mtimes and regprune's own folder aside).

The synthetic tree (tests/synth.py) keeps every k fast; the real-registry tree checks a sample of k
with real pulls. Removals are counted at `LocalStorage.remove_file` / `remove_empty_dir`, which
`remove_tree` is made of. CLI runs go through `python -m regprune` (or a one-run kill script) for a sample
of k, and for every k through `crash_helpers.DRIVER`, which forks one child per run from a warm interpreter
and calls `regprune.cli.main` there: the same CLI in a separate process, without paying the start-up each
time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple

import pytest
from crash_helpers import (
    BLOBS,
    REPO_ROOT,
    REPOS,
    Crash,
    Tree,
    age_tree,
    comparable,
    crash_at,
    kill_at,
    pulls,
    run_cli,
    run_jobs,
)
from synth import Reg

import regprune.scan
from fixtures import registry_kit as kit
from regprune import deletion, journal, refs
from regprune.graph import Graph
from regprune.plan import Selection
from regprune.safety import Overrides
from regprune.storage import LocalStorage
from regprune.store_access import open_store

#: --force: no registry serves these trees, and another session's registry must not make a run refuse.
COMMON = ["--yes", "--grace", "0s", "--force"]


class Op(NamedTuple):
    command: str  # as the journal records it
    argv: List[str]  # the CLI command, without COMMON and --root
    select: Callable[[Graph], Selection]  # the same selection, for the library path


OPS: Dict[str, Op] = {
    "multiarch": Op("delete lib/app:multi", ["delete", "lib/app:multi"], lambda g: refs.select(g, ["lib/app:multi"])),
    "repository": Op("delete tools/ci", ["delete", "tools/ci"], lambda g: refs.select(g, ["tools/ci"])),
    "gc": Op("gc", ["gc", "--uploads-older-than", "0s"], lambda g: Selection(gc=True, uploads_older_than=0.0)),
}


@pytest.fixture(autouse=True)
def one_scan_process(monkeypatch):
    """In this process, scan without forking helpers: the same scan, a few times faster on tiny trees
    (the CLI runs below keep the default)."""
    monkeypatch.setattr(regprune.scan, "default_processes", lambda: 1)


def build_tree(root: Path) -> None:
    """One tree with what each run removes: a multi-arch index with a referrer, a repository holding a
    nested one, orphans, unneeded links (sha512 alias too), stale tag history, an old upload, a repository
    with nothing left but `_layers` links."""
    reg = Reg(root)
    kids = [reg.image("lib/app", layers=[b"base", f"{arch} layer".encode()], config=f'{{"a":"{arch}"}}'.encode())
            for arch in ("amd64", "arm64")]
    index = reg.index("lib/app", "multi", children=kids)
    reg.artifact("lib/app", subject=index, payload=b"an sbom of multi")
    old = reg.image("lib/app", "v1", layers=[b"base", b"v0 layer"])
    reg.image("lib/app", "v1", layers=[b"base", b"v1 layer"])  # v1 moves on; its history keeps `old`
    reg.unlink_revision("lib/app", old)  # that history entry is now stale
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


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "base"
    build_tree(root)
    assert Tree(root).problems() == []
    return root


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)  # file mtimes kept: the plan's blob checks still match
    return dst


def run_in_process(root: Path, op: Op, k=None) -> int:
    """The library path (session, plan, execute) with removal k replaced by an exception; returns how
    many removals were attempted."""
    with crash_at(k) as counter:
        try:
            with deletion.session(str(root), lock=True) as opened:
                plan = deletion.plan(opened, op.select(opened.graph), op.command, 0.0, Overrides(force=True))
                deletion.execute(opened, plan, ["regprune", *op.argv], workers=1)
        except Crash:
            assert k is not None and counter["n"] >= k
        else:
            assert k is None, f"no crash at {k}: the run made only {counter['n']} removals"
    return counter["n"]


class Reference(NamedTuple):
    mutations: int
    snapshot: dict  # comparable() of the uninterrupted run's tree
    tree: Tree


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> Callable[[str], Reference]:
    done: Dict[str, Reference] = {}

    def get(name: str) -> Reference:
        if name not in done:
            root = copy(base, tmp_path_factory.mktemp(f"ref-{name}") / "root")
            n = run_in_process(root, OPS[name])
            assert n > 10
            done[name] = Reference(n, comparable(kit.tree_snapshot(root)), Tree(root))
        return done[name]

    return get


def assert_safe_after_crash(root: Path, ref: Reference) -> None:
    """Consistent; every remaining revision pullable; all the uninterrupted run keeps is still there."""
    assert deletion.consistent(open_store(str(root)).graph)
    tree = Tree(root)
    assert tree.problems() == []
    assert ref.tree.revision_set() <= tree.revision_set()
    assert ref.tree.tag_set() <= tree.tag_set()
    assert journal.unfinished(LocalStorage(str(root))) is not None


def assert_like_reference(root: Path, ref: Reference) -> None:
    got = comparable(kit.tree_snapshot(root))
    assert got == ref.snapshot, kit.snapshot_diff(ref.snapshot, got)[:20]
    runs = journal.all_runs(LocalStorage(str(root)))
    assert [r.state for r in runs] == [journal.DONE]


def sample(n: int) -> List[int]:
    return sorted({1, 2, n // 3, n // 2, n - 1, n})  # the ends of the run, and its middle


# ----------------------------------------------------------------------------------- every k, two ways
@pytest.mark.parametrize("name", sorted(OPS))
def test_exception_at_every_mutation_then_resume(name, base, reference, tmp_path):
    ref = reference(name)
    roots = {}
    for k in range(1, ref.mutations + 1):
        roots[k] = root = copy(base, tmp_path / f"k{k}")
        run_in_process(root, OPS[name], k)
        assert_safe_after_crash(root, ref)
    literal = sample(ref.mutations)[::2]
    for k in literal[:1]:  # a destructive command refuses and names resume (not the lock: it was released)
        proc = run_cli(roots[k], *OPS[name].argv, *COMMON)
        assert proc.returncode == 3 and "regprune resume" in proc.stderr, proc.stderr
    for k in literal:  # `python -m regprune resume --yes` for a sample, the same CLI in forked children for all
        proc = run_cli(roots[k], "resume", "--yes")
        assert proc.returncode == 0, proc.stderr
    rest = [k for k in roots if k not in literal]
    results = run_jobs([("run", None, ["resume", "--yes", "--root", str(roots[k])]) for k in rest], tmp_path / "jobs")
    assert [(k, code) for k, (code, _) in zip(rest, results) if code != 0] == []
    for root in roots.values():
        assert_like_reference(root, ref)


@pytest.mark.parametrize("name", sorted(OPS))
def test_hard_kill_at_every_mutation_then_resume(name, base, reference, tmp_path):
    ref = reference(name)
    op = OPS[name]
    ks = list(range(1, ref.mutations + 2))  # the last one is past the end: the run completes
    roots = {k: copy(base, tmp_path / f"k{k}") for k in ks}
    literal = sample(ref.mutations)[1::2]  # a few through the single-process script
    forked = [k for k in ks if k not in literal]
    results = run_jobs([("kill", k, [*op.argv, *COMMON, "--root", str(roots[k])]) for k in forked],
                       tmp_path / "kill")
    codes = {k: code for k, (code, _) in zip(forked, results)}
    for k in literal:
        codes[k] = kill_at(roots[k], k, *op.argv, *COMMON).returncode
    assert codes.pop(ref.mutations + 1) == 0, results[-1][1]
    assert {k: c for k, c in codes.items() if c != 137} == {}
    assert_like_reference(roots.pop(ref.mutations + 1), ref)
    for root in roots.values():
        assert_safe_after_crash(root, ref)
    results = run_jobs([("run", None, ["resume", "--yes", "--root", str(roots[k])]) for k in roots],
                       tmp_path / "resume")
    assert [(k, out) for k, (code, out) in zip(roots, results) if code != 0] == []
    for root in roots.values():
        assert_like_reference(root, ref)
    for k in literal:  # no stale lock: a new run starts and finishes
        proc = run_cli(roots[k], "gc", "--uploads-older-than", "0s", *COMMON)
        assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------ real registry
REAL_OPS = {"multiarch": ["delete", "tools/ci/runner:latest"], "repository": ["delete", "team/web"],
            "gc": ["gc", "--uploads-older-than", "0s"]}


@pytest.mark.realreg
@pytest.mark.parametrize("name", sorted(REAL_OPS))
def test_hard_kill_on_a_real_registry_tree(name, realreg_scenario, tmp_path):
    src, _ = realreg_scenario("demo")
    base = copy(src, tmp_path / "base")
    age_tree(base)
    argv = [*REAL_OPS[name], "--yes", "--grace", "0s"]
    ref_root = copy(base, tmp_path / "ref")
    with crash_at(None) as counter:  # count the removals of an uninterrupted run
        root = str(ref_root)
        with deletion.session(root, lock=True) as opened:
            sel = refs.select(opened.graph, [argv[1]]) if argv[0] == "delete" else Selection(
                gc=True, uploads_older_than=0.0)
            plan = deletion.plan(opened, sel, name, 0.0, Overrides())
            deletion.execute(opened, plan, argv, workers=1)
    ref = Reference(counter["n"], comparable(kit.tree_snapshot(ref_root)), Tree(ref_root))
    kept = ref.tree.tag_set() | {(n, r) for n in ref.tree.repos for r in ref.tree.untagged(n)}
    gone = {(t["repo"], t["tag"]) for t in plan.to_json(True)["tags"]}
    gone |= {(m["repo"], m["digest"]) for m in plan.to_json(True)["manifests"]}
    for k in (1, ref.mutations // 2, ref.mutations):
        root = copy(base, tmp_path / f"k{k}")
        assert kill_at(root, k, *argv).returncode == 137
        assert_safe_after_crash(root, ref)
        pulls(root, kept, ())  # every image that stays still pulls, mid-crash
        proc = run_cli(root, "resume", "--yes")
        assert proc.returncode == 0, proc.stderr
        assert_like_reference(root, ref)
        pulls(root, kept, gone)


# ------------------------------------------------------------------------------- a removal that fails
FAIL = r"""
import sys
from regprune import cli
from regprune.storage import LocalStorage, StorageError
target = sys.argv[1]
original = LocalStorage.remove_file
def remove_file(self, rel):
    if rel == target:
        raise StorageError(self.describe(rel), "Operation not permitted")
    return original(self, rel)
LocalStorage.remove_file = remove_file
cli.main(sys.argv[2:])
"""


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_failed_removal_is_one_error_line_and_resume_finishes(base, reference, tmp_path):
    ref = reference("multiarch")
    root = copy(base, tmp_path / "root")
    op = OPS["multiarch"]
    going = sorted(set(Tree(root).blobs) - set(ref.tree.blobs))
    blob = going[0]
    data_rel = f"{BLOBS}/{blob[7:9]}/{blob[7:]}/data"
    blob_dir = root / data_rel.rsplit("/", 1)[0]
    immutable = _chattr("+i", blob_dir)  # root ignores permissions, not the immutable flag
    try:
        if immutable:
            proc = run_cli(root, *op.argv, *COMMON)
        else:  # no chattr here: make the storage fail the same way
            proc = subprocess.run([sys.executable, "-c", FAIL, data_rel, *op.argv, *COMMON, "--root", str(root)],
                                  cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert proc.returncode == 5, proc.stderr
        assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr  # one line
        assert proc.stderr.startswith(f"Error: {root / data_rel}: "), proc.stderr
        assert_safe_after_crash(root, ref)
        history = json.loads(run_cli(root, "history", "--json").stdout)["runs"]
        assert [(r["command"], r["state"]) for r in history] == [("delete lib/app:multi", "running")]
        blocked = run_cli(root, "gc", *COMMON)
        assert blocked.returncode == 3 and "regprune resume" in blocked.stderr, blocked.stderr
        if immutable:  # still broken: resume fails the same way and leaves the run unfinished
            again = run_cli(root, "resume", "--yes")
            assert again.returncode == 5 and again.stderr.startswith(f"Error: {root / data_rel}: "), again.stderr
            assert journal.unfinished(LocalStorage(str(root))) is not None
    finally:
        if immutable:
            _chattr("-i", blob_dir)
    proc = run_cli(root, "resume", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert_like_reference(root, ref)


def test_resume_after_a_kill_between_the_directories_of_a_nested_name(tmp_path):
    reg = Reg(tmp_path / "base")
    reg.image("app", "v1", layers=[b"base", b"app layer"])
    gone = reg.image("legacy/tool", "0.9", layers=[b"base", b"tool layer"])
    reg.untag("legacy/tool", "0.9")
    reg.unlink_revision("legacy/tool", gone)  # `gc` removes the emptied repository, `legacy/` with it
    age_tree(reg.root)
    op = OPS["gc"]
    ref_root = copy(reg.root, tmp_path / "ref")
    n = run_in_process(ref_root, op)
    assert not (ref_root / REPOS / "legacy").exists()
    root = copy(reg.root, tmp_path / "crashed")
    with crash_at(n) as counter:  # the last removal: `repositories/legacy`, after `legacy/tool`
        with pytest.raises(Crash), deletion.session(str(root), lock=True) as opened:
            plan = deletion.plan(opened, op.select(opened.graph), op.command, 0.0, Overrides(force=True))
            deletion.execute(opened, plan, ["regprune", *op.argv], workers=1)
    assert counter["what"] == f"remove_empty_dir({REPOS}/legacy)"
    proc = run_cli(root, "resume", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert comparable(kit.tree_snapshot(root)) == comparable(kit.tree_snapshot(ref_root))
