"""regprune's read-only side against trees written by the real registry 2.8 (``fixtures/``).

Every scenario is built once per session by pushing real images into Debian's ``docker-registry``
(the ``realreg_scenario`` fixture of ``conftest.py``). What regprune says is checked against things it
did not compute:

* the orphan set against the registry's own ``garbage-collect --dry-run`` (and the scenario's model);
* ``du`` / ``ls`` numbers against blob sizes walked here and the graph the scenario recorded;
* ``check`` findings against the damage each scenario wrote (codes, paths, exit code);
* every read-only command, and the dry run of every destructive one, against a byte-exact snapshot;
* the committed demo: root spellings, a wrong root, serving a git-like copy, ``--verify-digests``.

Run: python -m pytest tests/test_realreg_scan.py -q
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fixtures import registry_kit as kit  # noqa: E402
from fixtures.scenarios import SCENARIOS, check_pulls, rev_link  # noqa: E402
from regprune import report  # noqa: E402
from regprune.findings import CODES, DAMAGE  # noqa: E402
from regprune.store_access import open_store  # noqa: E402

pytestmark = [
    pytest.mark.realreg,
    pytest.mark.skipif(
        not (shutil.which(kit.REGISTRY_BIN) and shutil.which(kit.SKOPEO_BIN)),
        reason="needs docker-registry and skopeo",
    ),
]

V2 = "docker/registry/v2"
DEMO = REPO_ROOT / "fixtures" / "demo"
DEMO_EXPECTED = REPO_ROOT / "fixtures" / "demo.expected.json"

# Scenarios whose tree is whole: everything a manifest references was pushed and is readable.
HEALTHY = (
    "demo",
    "tagged_list_untagged_children",
    "untagged_list_untagged_children",
    "untagged_list_tagged_children",
    "tagged_list_deleted_child",
    "nested_index",
    "sha512_layer",
    "schema1",
    "untagged_repository",
)

# The fixture's finding kinds and the regprune finding code each one is.
CODE_FOR = {
    "link_empty": "link-empty",
    "link_trailing_newline": "link-malformed",
    "link_garbage": "link-malformed",
    "link_mismatch": "link-mismatch",
    "manifest_blob_missing": "revision-blob-missing",
    "manifest_unparseable": "manifest-unparseable",
    "manifest_unknown_media_type": "manifest-unknown-type",
    "blob_missing": "blob-missing",
    "blob_bad_path": "blob-outside-layout",
    "repository_bad_name": "invalid-repository-name",
    "nas_litter": "nas-litter",
    "symlink": "symlink",
    "repository_no_layers": "repository-invisible-2.8",
    "repository_no_manifests": "repository-invisible-3",
    "proxy_cache": "pull-through-cache",
    "upload_bad_startedat": "upload-no-startedat",
    "index_child_missing": "index-child-missing",
}

# Codes regprune also reports, beyond the fixture's own findings; each is a true consequence.
CONSEQUENCES = {
    # the tag v1 names a manifest that (with its revision link unusable) is no longer a revision
    "link_empty": {"tag-target-missing"},
    "link_mismatch": {"tag-target-missing"},
    # app's _layers link to the removed layer now dangles
    "blob_missing": {"layer-link-dangling"},
    # symbolic links are never followed: the layer behind one counts as not stored
    "symlinks": {"blob-missing", "layer-link-dangling"},
    # a healthy schema1 manifest is still a risk for registry 3.x
    "schema1": {"schema1"},
}

# An @eaDir inside a blob directory that holds data: regprune does not list such directories (see
# test_nas_litter_inside_a_blob_directory_is_reported, a known gap).
LITTER_IN_BLOB_DIR = re.compile(r"^docker/registry/v2/blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}/@eaDir$")


# ------------------------------------------------------------------------------------------ helpers
def regprune(*args: str) -> subprocess.CompletedProcess:
    """``python -m regprune ARGS`` from the repository, never on a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "regprune", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def regprune_json(*args: str, ok: Iterable[int] = (0,)) -> Tuple[dict, int]:
    proc = regprune(*args, "--json")
    assert proc.returncode in tuple(ok), f"regprune {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout), proc.returncode


def blob_sizes(root: Path) -> Dict[str, int]:
    """``{digest: size}`` of every ``blobs/sha256/<xx>/<hex>/data`` regular file, walked here."""
    out = {}
    base = root / V2 / "blobs" / "sha256"
    for prefix in sorted(os.listdir(base)):
        if not re.fullmatch(r"[0-9a-f]{2}", prefix):
            continue
        for hexpart in sorted(os.listdir(base / prefix)):
            data = base / prefix / hexpart / "data"
            if re.fullmatch(r"[0-9a-f]{64}", hexpart) and hexpart[:2] == prefix and data.is_file():
                if not data.is_symlink():
                    out[f"sha256:{hexpart}"] = data.stat().st_size
    return out


def blob_data(root: Path, digest: str) -> Path:
    hexpart = digest.split(":", 1)[1]
    return root / V2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"


def platform_label(desc: dict) -> str:
    platform = desc.get("platform") or {}
    return "/".join(platform[k] for k in ("os", "architecture", "variant") if isinstance(platform.get(k), str))


class Truth:
    """A scenario's tree as the test knows it without regprune: blob sizes walked from disk, the graph
    from the scenario's model (what it pushed), manifests read back from their stored bytes.

    Same definitions as the README: a manifest's needs are its own blob and its direct references
    (sha512 names resolved through the alias links); a repository needs what its revisions need."""

    def __init__(self, root: Path, expected: dict):
        self.root = root
        self.expected = expected
        self.sizes = blob_sizes(root)
        self.aliases = expected["sha512_aliases"]
        self.manifests = expected["manifests"]
        self.revisions = {repo: set(expected["revisions"].get(repo, [])) for repo in expected["repositories"]}
        self.tags = {repo: expected["tags"].get(repo, {}) for repo in expected["repositories"]}

    def size(self, digests: Iterable[str]) -> int:
        return sum(self.sizes.get(d, 0) for d in set(digests))

    def needs(self, digest: str) -> Set[str]:
        refs = self.manifests.get(digest, {}).get("references", [])
        return {digest} | {self.aliases.get(r, r) for r in refs}

    def needs_of(self, digests: Iterable[str]) -> Set[str]:
        out: Set[str] = set()
        for d in digests:
            out |= self.needs(d)
        return out

    def repo_needs(self, repo: str) -> Set[str]:
        return self.needs_of(self.revisions[repo])

    def repo_bytes(self, repo: str) -> Tuple[int, int]:
        mine = self.repo_needs(repo)
        others = set().union(*(self.repo_needs(r) for r in self.revisions if r != repo))
        return self.size(mine), self.size(mine - others)

    # -- images (what `ls` shows) ------------------------------------------------------------------
    def children(self, repo: str, digest: str) -> List[str]:
        m = self.manifests.get(digest, {})
        if m.get("kind") != "index":
            return []
        return [c for c in m["references"] if c in self.revisions[repo]]

    def tagged(self, repo: str) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for tag, digest in sorted(self.tags[repo].items()):
            out.setdefault(digest, []).append(tag)
        return out

    def image_roots(self, repo: str) -> Set[str]:
        listed = {c for d in self.revisions[repo] for c in self.children(repo, d)}
        tagged = self.tagged(repo)
        return {d for d in self.revisions[repo] if d in tagged or d not in listed}

    def closure(self, repo: str, digest: str) -> Set[str]:
        seen: Set[str] = set()
        todo = [digest]
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo += self.children(repo, d)
        return seen

    def removal(self, repo: str, digest: str) -> Set[str]:
        """The revisions deleting this image removes: it, and its children nothing else keeps."""
        removed = self.closure(repo, digest)
        tagged = self.tagged(repo)
        parents = {c: {p for p in self.revisions[repo] if c in self.children(repo, p)} for c in removed}
        changed = True
        while changed:
            changed = False
            for d in sorted(removed - {digest}):
                if d in tagged or parents[d] - removed:
                    removed.discard(d)
                    changed = True
        return removed

    def image_bytes(self, repo: str, digest: str) -> Tuple[int, int]:
        total = self.size(self.needs_of(self.closure(repo, digest)))
        removed = self.removal(repo, digest)
        others = set()
        for r, revs in self.revisions.items():
            others |= self.needs_of(revs - removed if r == repo else revs)
        return total, self.size(self.needs_of(removed) - others)

    def manifest_body(self, digest: str) -> dict:
        return json.loads(blob_data(self.root, digest).read_bytes())


def orphan_digests(root: Path) -> Set[str]:
    graph = open_store(str(root)).graph
    return {str(graph.store.digest(b)) for b in graph.orphans()}


def untagged_digests(root: Path) -> Dict[str, Set[str]]:
    graph = open_store(str(root)).graph
    return {name: {str(graph.store.digest(r)) for r in rg.untagged} for name, rg in graph.repos.items()}


# ------------------------------------------------------------------------- 1. orphans vs 2.8's own GC
@pytest.mark.parametrize("name", HEALTHY)
def test_orphans_are_exactly_what_registry_gc_would_delete(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    registry_says = kit.gc_dry_run(root)  # garbage-collect --dry-run, without -m
    ours = orphan_digests(root)
    du, _ = regprune_json("du", "--root", str(root))
    sizes = blob_sizes(root)
    assert du["orphans"] == {"count": len(ours), "bytes": sum(sizes[d] for d in ours)}
    assert ours == set(expected["orphan_blobs"])  # the model: what the scenario wrote and deleted
    if name == "sha512_layer":
        # 2.8's GC does not resolve the sha512 alias link and would sweep a tagged image's layer.
        layer = expected["sha512_layer"]["sha256"]
        assert registry_says - ours == {layer}
        assert ours == registry_says - {layer}
        assert layer not in ours
    else:
        assert ours == registry_says


def test_demo_orphans_are_the_deleted_images_blobs(realreg_scenario):
    """Not a vacuous agreement: the demo has orphans (the images deleted over HTTP)."""
    root, expected = realreg_scenario("demo")
    ours = orphan_digests(root)
    assert len(ours) == 6
    deleted = {d for ds in expected["deleted_over_http"].values() for d in ds}
    assert deleted <= ours


# ------------------------------------------------------------------- 2. reports vs an independent count
@pytest.mark.parametrize("name", HEALTHY)
def test_du_matches_blobs_walked_and_the_model(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    truth = Truth(root, expected)
    assert set(truth.sizes) == set(expected["blobs"])  # the walk and the model agree on what is stored
    du = report.du(open_store(str(root)).graph, sort="name")

    assert du["blobs"] == {"count": len(truth.sizes), "bytes": sum(truth.sizes.values())}
    assert du["orphans"] == {"count": len(expected["orphan_blobs"]), "bytes": truth.size(expected["orphan_blobs"])}
    untagged = expected["untagged_revisions"]
    freed = set(expected["orphan_blobs_delete_untagged"]) - set(expected["orphan_blobs"])
    assert du["untagged"] == {"count": sum(map(len, untagged.values())), "bytes": truth.size(freed)}
    uploads = [(repo, u) for repo, uuids in expected["uploads"].items() for u in uuids]
    upload_bytes = sum(
        (root / V2 / "repositories" / repo / "_uploads" / u / "data").stat().st_size for repo, u in uploads
    )
    assert du["uploads"] == {"count": len(uploads), "bytes": upload_bytes}

    assert [r["name"] for r in du["repositories"]] == expected["repositories"]
    for row in du["repositories"]:
        repo = row["name"]
        total, exclusive = truth.repo_bytes(repo)
        assert row == {
            "name": repo,
            "tags": len(truth.tags[repo]),
            "manifests": len(truth.revisions[repo]),
            "untagged": len(untagged.get(repo, [])),
            "bytes": total,
            "exclusive_bytes": exclusive,
        }, repo


@pytest.mark.parametrize("name", HEALTHY)
def test_untagged_revisions_match_the_model(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    ours = untagged_digests(root)
    assert sorted(ours) == expected["repositories"]
    for repo, digests in ours.items():
        assert digests == set(expected["untagged_revisions"].get(repo, [])), repo


def _only(digests: Iterable[str]) -> str:
    (one,) = digests
    return one


def test_untagged_semantics_of_indexes_and_referrers(realreg_scenario):
    """The four manifest-list cases and the demo's referrers, spelled out from the manifests."""

    def setup(name: str):
        root, expected = realreg_scenario(name)
        return untagged_digests(root), expected["manifests"], expected["tags"]

    def revisions(name: str, repo: str) -> Set[str]:
        return set(realreg_scenario(name)[1]["revisions"][repo])

    # A tagged list: its children are reachable only through it, and never untagged.
    untagged, manifests, tags = setup("tagged_list_untagged_children")
    lst = tags["multi"]["latest"]
    assert manifests[lst]["kind"] == "index" and len(manifests[lst]["references"]) == 2
    assert untagged["multi"] == set()

    # An untagged list: it and its children are untagged.
    untagged, manifests, tags = setup("untagged_list_untagged_children")
    index = _only(d for d, m in manifests.items() if m["kind"] == "index")
    assert tags["multi"]["latest"] != index
    assert untagged["multi"] == {index, *manifests[index]["references"]}

    # An untagged list whose children are tagged: only the list.
    untagged, manifests, tags = setup("untagged_list_tagged_children")
    index = _only(d for d, m in manifests.items() if m["kind"] == "index")
    assert set(manifests[index]["references"]) == {tags["multi"]["amd64"], tags["multi"]["arm64"]}
    assert untagged["multi"] == {index}

    # A tagged list that lost a child: the remaining child is still the list's.
    untagged, _, _ = setup("tagged_list_deleted_child")
    assert untagged["multi"] == set()

    # Nested: every level below a tagged index is kept.
    untagged, _, _ = setup("nested_index")
    assert untagged["nested"] == set()

    # Demo: the overwritten latest is untagged; the SBOM pushed by digest (subject v1, tagged) is not,
    # nor the tagged signature, nor the children of the two tagged indexes.
    untagged, manifests, tags = setup("demo")
    api = tags["team/api"]
    sbom = _only(d for d, m in manifests.items() if m.get("subject") == api["v1"])
    sig = api[f"sha256-{api['v2'].split(':')[1]}.sig"]
    assert manifests[sig]["subject"] == api["v2"]
    old = revisions("demo", "team/api") - set(api.values()) - {sbom}
    assert len(old) == 1
    assert untagged["team/api"] == old
    assert sbom not in untagged["team/api"] and sig not in untagged["team/api"]
    assert untagged["team/web"] == set() and untagged["tools/ci/runner"] == set()
    assert untagged["tools/ci"] == set() and untagged["legacy/tool"] == set()


@pytest.mark.parametrize("name", HEALTHY)
def test_ls_rows_match_an_independent_computation(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    truth = Truth(root, expected)
    opened = open_store(str(root))
    rows = report.ls(opened.graph, opened.storage)["images"]
    want = {(repo, d) for repo in truth.revisions for d in truth.image_roots(repo)}
    assert {(r["repository"], r["digest"]) for r in rows} == want
    assert len(rows) == len(want)
    order = [(r["repository"], r["tags"][:1] or ["\U0010ffff"], r["digest"]) for r in rows]
    assert order == sorted(order)  # by repository, then first tag (untagged last), then digest
    for row in rows:
        repo, digest = row["repository"], row["digest"]
        body = truth.manifest_body(digest)
        total, exclusive = truth.image_bytes(repo, digest)
        assert row["tags"] == truth.tagged(repo).get(digest, []), (repo, digest)
        assert row["kind"] == expected["manifests"][digest]["kind"], (repo, digest)
        if "mediaType" in body:
            assert row["media_type"] == body["mediaType"], (repo, digest)
        assert (row["bytes"], row["exclusive_bytes"]) == (total, exclusive), (repo, digest)
        if row["kind"] != "index":
            assert row["platforms"] == [], (repo, digest)
        else:
            assert row["platforms"] == sorted(leaf_platforms(truth, body)), (repo, digest)


def leaf_platforms(truth, index_body):
    """Platform labels of the images an index names, through nested indexes."""
    found = set()
    for desc in index_body["manifests"]:
        child = truth.manifest_body(desc["digest"])
        if "manifests" in child:
            found |= leaf_platforms(truth, child)
        elif desc.get("platform"):
            p = desc["platform"]
            found.add("/".join(p[k] for k in ("os", "architecture", "variant") if p.get(k)))
    return found


def test_ls_demo_by_hand(realreg_scenario):
    root, expected = realreg_scenario("demo")
    opened = open_store(str(root))
    rows = {(r["repository"], tuple(r["tags"])): r for r in report.ls(opened.graph, opened.storage)["images"]}
    runner = rows[("tools/ci/runner", ("latest",))]
    assert runner["kind"] == "index"
    assert runner["platforms"] == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    stable = rows[("team/web", ("stable",))]
    assert stable["kind"] == "index" and stable["platforms"] == ["linux/amd64", "linux/arm64"]
    assert rows[("team/api", ("latest", "v2"))]["kind"] == "image"
    sig = [r for (repo, tags), r in rows.items() if repo == "team/api" and tags and tags[0].endswith(".sig")]
    assert [r["kind"] for r in sig] == ["artifact"]

    # team/api:v1 shares both base layers with everything; only its manifest, config and own layer
    # are exclusive (its SBOM stays: an image's exclusive bytes leave every other revision in place).
    v1 = expected["tags"]["team/api"]["v1"]
    body = json.loads(blob_data(root, v1).read_bytes())
    own = [v1, body["config"]["digest"], body["layers"][-1]["digest"]]
    row = rows[("team/api", ("v1",))]
    assert row["exclusive_bytes"] == sum(blob_data(root, d).stat().st_size for d in own)
    everything = [v1, body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]
    assert row["bytes"] == sum(blob_data(root, d).stat().st_size for d in everything)


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "tagged_list_untagged_children",
        "nested_index",
    ],
)
def test_ls_platforms_are_real_platforms(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    opened = open_store(str(root))
    indexes = [r for r in report.ls(opened.graph, opened.storage)["images"] if r["kind"] == "index"]
    assert indexes
    for row in indexes:
        assert row["platforms"], row
        assert "" not in row["platforms"], row
        body = json.loads(blob_data(root, row["digest"]).read_bytes())
        declared = {platform_label(c) for c in body["manifests"]} - {""}
        assert declared <= set(row["platforms"]), row


# ------------------------------------------------------------------------------ 3. check on damage
def _names(found: str, fixture: dict) -> bool:
    """Whether a finding's path names what the fixture's finding names: the same path, an entry in
    it (a blob directory's data, an upload's startedat), or the outermost bad directory holding it.
    A manifest's finding may name its revision link instead of its blob."""
    paths = [fixture["path"]]
    if fixture["kind"].startswith("manifest_") and "repository" in fixture and "digest" in fixture:
        paths.append(rev_link(fixture["repository"], fixture["digest"]))
    return any(found == p or found.startswith(p + "/") or p.startswith(found + "/") for p in paths)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_check_reports_each_damage_by_code_and_path(realreg_scenario, name):
    root, expected = realreg_scenario(name)
    result, rc = regprune_json("check", "--root", str(root), ok=(0, 3))
    found = result["findings"]
    codes = {f["code"] for f in found}

    if name == "stray_tmp":  # ignored: at most housekeeping about the stray files themselves
        assert codes <= {"stray-temporary"}
        assert {f["path"] for f in found} <= set(expected["ignored"])
        assert rc == 0 and result["damaged"] is False
        return

    fixture = expected["findings"]
    assert codes == {CODE_FOR[f["kind"]] for f in fixture} | CONSEQUENCES.get(name, set())
    for want in fixture:
        if LITTER_IN_BLOB_DIR.match(want["path"]):
            continue  # a known gap, see test_nas_litter_inside_a_blob_directory_is_reported
        code = CODE_FOR[want["kind"]]
        assert any(f["code"] == code and _names(f["path"], want) for f in found), (want, found)
    for f in found:  # and no finding of those codes about anything else
        mine = [w for w in fixture if CODE_FOR[w["kind"]] == f["code"]]
        if mine:
            assert any(_names(f["path"], w) for w in mine), f

    damaged = any(CODES[c][0] == DAMAGE for c in codes)
    assert [f["severity"] for f in found] == [CODES[f["code"]][0] for f in found]
    assert result["damaged"] is damaged
    assert rc == (3 if damaged else 0)


def test_check_consequences_name_the_right_things(realreg_scenario):
    root, expected = realreg_scenario("link_empty")
    (tag,) = [
        f
        for f in regprune_json("check", "--root", str(root), ok=(3,))[0]["findings"]
        if f["code"] == "tag-target-missing"
    ]
    assert tag["path"] == f"{V2}/repositories/app/_manifests/tags/v1/current/link"
    assert tag["value"] == "sha256:" + expected["damage"]["path"].split("/")[-2]  # the emptied revision

    root, expected = realreg_scenario("blob_missing")
    layer = expected["findings"][0]["digest"]
    (dangling,) = [
        f
        for f in regprune_json("check", "--root", str(root), ok=(3,))[0]["findings"]
        if f["code"] == "layer-link-dangling"
    ]
    assert dangling["path"] == f"{V2}/repositories/app/_layers/sha256/{layer[7:]}/link"


def test_nas_litter_inside_a_blob_directory_is_reported(realreg_scenario):
    root, expected = realreg_scenario("nas_litter")
    inside = [f["path"] for f in expected["findings"] if LITTER_IN_BLOB_DIR.match(f["path"])]
    assert len(inside) == 1
    found = regprune_json("check", "--root", str(root))[0]["findings"]
    assert any(f["code"] == "nas-litter" and f["path"] == inside[0] for f in found), found


# ---------------------------------------------------------------------- 4. nothing writes, dry runs too
DRY_RUN_CASES = {
    # scenario: refs for `delete` (a tag, a whole repository)
    "demo": ("team/api:v1", "team/web"),
    "symlinks": ("app:v1", "lib"),
    "upload_bad_startedat": ("app:v1", "lib"),
}


@pytest.mark.parametrize("name", sorted(DRY_RUN_CASES))
def test_reports_and_dry_runs_leave_the_tree_byte_identical(realreg_copy, name):
    root, _ = realreg_copy(name)
    r = str(root)
    read_only = [
        ["du", "--root", r],
        ["du", "--root", r, "--json"],
        ["ls", "--root", r],
        ["ls", "--root", r, "--json"],
        ["check", "--root", r],
        ["check", "--root", r, "--json"],
        ["check", "--root", r, "--verify-digests"],
        ["check", "--root", r, "--verify-digests", "--json"],
    ]
    dry_runs = []
    for ref in DRY_RUN_CASES[name]:
        dry_runs += [["delete", ref, "--root", r, "--dry-run"], ["delete", ref, "--root", r, "--dry-run", "--json"]]
    dry_runs += [
        ["untagged", "--root", r, "--dry-run"],
        ["gc", "--root", r, "--dry-run"],
    ]
    # --force and --grace 0s get past the refusals for recent uploads and the grace window: the plan
    # is then made in full (and still must not be written).
    dry_runs += [cmd + ["--force", "--grace", "0s", "--json"] for cmd in dry_runs if "--json" not in cmd]
    before = kit.tree_snapshot(root)
    for cmd in read_only + dry_runs:
        proc = regprune(*cmd)
        assert "Traceback" not in proc.stderr, (cmd, proc.stderr)
        assert proc.returncode in (0, 3), (cmd, proc.returncode, proc.stderr)
        if proc.returncode == 3 and cmd[0] not in ("check",):
            assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, (cmd, proc.stderr)
        if name == "demo":
            assert proc.returncode == 0 or "--force" not in cmd, (cmd, proc.stderr)
        if proc.returncode == 0 and "--json" in cmd and cmd[0] in ("delete", "untagged", "gc"):
            assert json.loads(proc.stdout)["dry_run"] is True
        assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == [], cmd
    assert not (root / "regprune").exists()


@pytest.mark.parametrize(
    "name",
    [
        "link_empty",
        "manifest_blob_missing",
        "link_mismatch",
        "manifest_unparseable",
        "manifest_unknown_media_type",
        "repository_no_layers",
    ],
)
def test_gc_dry_run_never_plans_a_blob_that_damage_hides(realreg_scenario, name):
    """A side finding of the dry runs above: on a damaged tree, gc's plan either refuses or keeps
    every blob the scenario's model says a revision still references."""
    root, expected = realreg_scenario(name)
    proc = regprune("gc", "--root", str(root), "--dry-run", "--force", "--grace", "0s", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    if proc.returncode == 3:
        assert proc.stderr.startswith("Error: ")
        return
    planned = {b["digest"] for b in json.loads(proc.stdout)["blobs"]}
    in_use = set(expected["blobs"]) - set(expected["orphan_blobs"])
    assert planned & in_use == set()


# ----------------------------------------------------------------------------- 5. the committed demo
# legacy/tool keeps only _layers links once its empty _manifests/ is dropped (as in a git checkout):
# regprune then warns, rightly, that registry 3.x would not see it.
LEGACY_TOOL_INVISIBLE = {
    "code": "repository-invisible-3",
    "severity": "warning",
    "path": f"{V2}/repositories/legacy/tool",
    "value": "legacy/tool",
}


def test_demo_root_spellings_give_the_same_du(tmp_path):
    before = kit.tree_snapshot(DEMO)
    outputs = []
    for path in (DEMO, DEMO / "docker", DEMO / "docker" / "registry", DEMO / "docker" / "registry" / "v2"):
        for spelling in (str(path), str(path) + "/"):
            proc = regprune("du", "--root", spelling, "--json")
            assert proc.returncode == 0, (spelling, proc.stderr)
            outputs.append(proc.stdout)
    assert len(set(outputs)) == 1
    du = json.loads(outputs[0])
    expected = json.loads(DEMO_EXPECTED.read_text())
    assert sorted(r["name"] for r in du["repositories"]) == expected["repositories"]
    assert du["orphans"]["count"] == len(expected["orphan_blobs"])
    assert kit.snapshot_diff(before, kit.tree_snapshot(DEMO)) == []


@pytest.mark.parametrize("where", ["missing", "blobs_dir", "empty_dir"])
def test_a_wrong_root_exits_4_with_one_line(tmp_path, where):
    path = {
        "missing": tmp_path / "no" / "such" / "dir",
        "blobs_dir": DEMO / "docker" / "registry" / "v2" / "blobs",
        "empty_dir": tmp_path,
    }[where]
    proc = regprune("du", "--root", str(path), "--json")
    assert proc.returncode == 4
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: {path}: ")
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1


def test_demo_copy_is_served_and_scanned_like_the_original(tmp_path):
    """A git-like copy of the committed demo (empty directories dropped): the real registry serves
    every tag, and regprune's du is the original's (but for one warning, below)."""
    expected = json.loads(DEMO_EXPECTED.read_text())
    root = tmp_path / "demo"
    kit.copy_tree_like_git(DEMO, root)
    with kit.RegistryServer(root) as server:
        pulled = check_pulls(server, expected)
    assert pulled and all(all(refs.values()) for refs in pulled.values())
    original, _ = regprune_json("du", "--root", str(DEMO))
    copy, _ = regprune_json("du", "--root", str(root))
    # Nothing else may differ.
    assert [f for f in copy.pop("findings") if f != LEGACY_TOOL_INVISIBLE] == []
    assert [f for f in original.pop("findings") if f != LEGACY_TOOL_INVISIBLE] == []
    assert copy == original
    _, rc = regprune_json("check", "--root", str(root))
    assert rc == 0


# ------------------------------------------------------------------------------- 6. --verify-digests
def _demo_copy_and_layer(tmp_path) -> Tuple[Path, str, List[str]]:
    """A copy of the demo, team/api:v1's own layer (no other manifest names it), and v1's digest."""
    expected = json.loads(DEMO_EXPECTED.read_text())
    root = tmp_path / "demo"
    kit.copy_tree_like_git(DEMO, root)
    v1 = expected["tags"]["team/api"]["v1"]
    layer = expected["manifests"][v1]["references"][-1]
    naming = [d for d, m in expected["manifests"].items() if layer in m["references"]]
    assert naming == [v1]
    return root, layer, naming


def _verify(root: Path) -> Tuple[List[dict], int]:
    result, rc = regprune_json("check", "--root", str(root), "--verify-digests", ok=(0, 3))
    # the copy drops legacy/tool's empty _manifests/ (see above)
    return [f for f in result["findings"] if f != LEGACY_TOOL_INVISIBLE], rc


def test_verify_digests_on_the_intact_demo(tmp_path):
    root, _, _ = _demo_copy_and_layer(tmp_path)
    assert _verify(root) == ([], 0)


def test_verify_digests_finds_a_flipped_byte(tmp_path):
    root, layer, _ = _demo_copy_and_layer(tmp_path)
    data = blob_data(root, layer)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0x01
    data.write_bytes(bytes(content))
    rel = str(data.relative_to(root))

    # without hashing nothing shows: the size is right and the scan reads no layer
    assert regprune_json("check", "--root", str(root))[1] == 0
    findings, rc = _verify(root)
    assert rc == 3
    assert [(f["code"], f["path"], f["value"], f["severity"]) for f in findings] == [
        ("blob-digest-mismatch", rel, layer, "damage")
    ]


@pytest.mark.parametrize("change", ["truncate", "extend"])
def test_verify_digests_finds_a_size_change(tmp_path, change):
    root, layer, naming = _demo_copy_and_layer(tmp_path)
    data = blob_data(root, layer)
    content = data.read_bytes()
    data.write_bytes(content[:-1] if change == "truncate" else content + b"\0")
    rel = str(data.relative_to(root))

    findings, rc = _verify(root)
    assert rc == 3
    # new content: the digest check fails too; and v1's manifest declares the old size
    assert sorted((f["code"], f["path"], f["value"]) for f in findings) == [
        ("blob-digest-mismatch", rel, layer),
        *[("blob-size-mismatch", rel, layer)] * len(naming),
    ]
    (size,) = [f for f in findings if f["code"] == "blob-size-mismatch"]
    assert str(len(content)) in size["detail"] and str(data.stat().st_size) in size["detail"]
