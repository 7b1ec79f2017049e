"""Small hand-built registries with the exact numbers `du` and `ls` must print: repository and image
bytes / exclusive bytes, orphans, untagged revisions (the four scenarios of distribution issues #3178 and
#3004, and referrers), sha512 alias links, shared manifests; the JSON shapes; reproducible output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from synth import OCI_INDEX, OCI_MANIFEST, Reg, sha256

from regprune import report
from regprune.digest import Digest
from regprune.findings import Finding
from regprune.graph import Graph
from regprune.store_access import open_store

BASE = b"B" * 1000  # a base layer most images share
ORPHAN = b"orphan!"  # 7 bytes no manifest names


def opened(reg: Reg, **kw):
    return open_store(str(reg.root), workers=4, **kw)


def names(graph: Graph, ids) -> set:
    return {str(graph.store.digest(i)) for i in ids}


def untagged(reg: Reg, repo: str) -> set:
    graph = opened(reg).graph
    return names(graph, graph.repos[repo].untagged)


def du(reg: Reg) -> dict:
    return report.du(opened(reg).graph)


def repo_row(reg: Reg, name: str) -> dict:
    return next(r for r in du(reg)["repositories"] if r["name"] == name)


def ls_rows(reg: Reg) -> dict:
    o = opened(reg)
    return {r["digest"]: r for r in report.ls(o.graph, o.storage)["images"]}


def config_of(reg: Reg, image: str) -> str:
    return reg.docs[image]["config"]["digest"]


def image_blobs(reg: Reg, image: str) -> list:
    """The manifest, its config and its layers."""
    blobs, _, _ = reg.references(image)
    return [image] + blobs


# --------------------------------------------------------------------------------------- repositories
@pytest.fixture
def two_repos(tmp_path):
    """`a`: v1 (base + a1), an untagged older image (base + a2); `b`: latest (base + b1); an orphan blob;
    an upload of 123 bytes."""
    reg = Reg(tmp_path)
    reg.a1 = reg.image("a", tag="v1", layers=[BASE, b"1" * 200])
    reg.a2 = reg.image("a", layers=[BASE, b"2" * 300])
    reg.b1 = reg.image("b", tag="latest", layers=[BASE, b"3" * 50])
    reg.orphan = reg.blob(ORPHAN)
    reg.upload("b", "u1", b"u" * 123)
    return reg


def test_repository_bytes_and_exclusive_bytes(two_repos):
    reg = two_repos
    a_all = image_blobs(reg, reg.a1) + image_blobs(reg, reg.a2)
    b_all = image_blobs(reg, reg.b1)
    base = sha256(BASE)
    assert repo_row(reg, "a") == {
        "name": "a", "tags": 1, "manifests": 2, "untagged": 1,
        "bytes": reg.size(*a_all), "exclusive_bytes": reg.size(*a_all) - 1000,
    }
    assert repo_row(reg, "b") == {
        "name": "b", "tags": 1, "manifests": 1, "untagged": 0,
        "bytes": reg.size(*b_all), "exclusive_bytes": reg.size(*b_all) - 1000,
    }
    assert reg.size(*b_all) - 1000 == reg.size(reg.b1, config_of(reg, reg.b1)) + 50
    assert base in a_all and base in b_all


def test_totals(two_repos):
    reg = two_repos
    report_ = du(reg)
    assert report_["blobs"] == {"count": len(reg.content), "bytes": sum(len(c) for c in reg.content.values())}
    assert report_["orphans"] == {"count": 1, "bytes": 7}
    assert report_["uploads"] == {"count": 1, "bytes": 123}
    assert report_["untagged"] == {"count": 1, "bytes": reg.size(reg.a2, config_of(reg, reg.a2)) + 300}
    assert report_["findings"] == []


def test_image_bytes_and_exclusive_bytes(two_repos):
    reg = two_repos
    rows = ls_rows(reg)
    for image, own_layer in ((reg.a1, 200), (reg.a2, 300), (reg.b1, 50)):
        row = rows[image]
        assert row["bytes"] == reg.size(*image_blobs(reg, image))
        assert row["exclusive_bytes"] == reg.size(image, config_of(reg, image)) + own_layer
    assert set(rows) == {reg.a1, reg.a2, reg.b1}


def test_orphans(two_repos):
    reg = two_repos
    reg.untag("a", "v1")  # untagged is not orphaned: still pullable by digest
    layer = reg.layer("b", b"uploaded, never used")  # a _layers link does not keep a blob
    graph = opened(reg).graph
    assert names(graph, graph.orphans()) == {reg.orphan, layer}


def test_unlinked_revision_orphans_what_only_it_needed(two_repos):
    reg = two_repos
    reg.unlink_revision("a", reg.a2)
    graph = opened(reg).graph
    assert names(graph, graph.orphans()) == {reg.orphan, reg.a2, config_of(reg, reg.a2), sha256(b"2" * 300)}


def test_sort_and_top(two_repos):
    reg = two_repos
    graph = opened(reg).graph
    assert [r["name"] for r in report.du(graph, sort="bytes")["repositories"]] == ["a", "b"]
    assert [r["name"] for r in report.du(graph, sort="name")["repositories"]] == ["a", "b"]
    assert [r["name"] for r in report.du(graph, sort="exclusive", top=1)["repositories"]] == ["a"]


# ---------------------------------------------------------------------- untagged: the four scenarios
@pytest.fixture
def multi(tmp_path):
    reg = Reg(tmp_path)
    reg.amd = reg.image("m", layers=[BASE, b"amd" * 10])
    reg.arm = reg.image("m", layers=[BASE, b"arm" * 10])
    return reg


def test_tagged_index_with_untagged_children(multi):
    reg = multi
    index = reg.index("m", "v1", children=[reg.amd, reg.arm])
    assert untagged(reg, "m") == set()
    report_ = du(reg)
    assert report_["untagged"] == {"count": 0, "bytes": 0}
    assert report_["orphans"] == {"count": 0, "bytes": 0}
    rows = ls_rows(reg)
    assert set(rows) == {index}  # children are part of the index, not images of their own
    everything = [index] + image_blobs(reg, reg.amd) + image_blobs(reg, reg.arm)
    assert rows[index]["bytes"] == rows[index]["exclusive_bytes"] == reg.size(*everything)
    assert rows[index]["platforms"] == ["linux/amd64", "linux/arm64"]


def test_untagged_index_with_untagged_children(multi):
    reg = multi
    index = reg.index("m", None, children=[reg.amd, reg.arm])
    assert untagged(reg, "m") == {index, reg.amd, reg.arm}
    everything = [index] + image_blobs(reg, reg.amd) + image_blobs(reg, reg.arm)
    assert du(reg)["untagged"] == {"count": 3, "bytes": reg.size(*everything)}


def test_untagged_index_with_tagged_children(multi):
    reg = multi
    reg.tag("m", "amd", reg.amd)
    index = reg.index("m", None, children=[reg.amd, reg.arm])
    assert untagged(reg, "m") == {index, reg.arm}
    # removing the untagged revisions frees the index and arm's own blobs; amd and the base stay
    freed = [index, reg.arm, config_of(reg, reg.arm), sha256(b"arm" * 10)]
    assert du(reg)["untagged"] == {"count": 2, "bytes": reg.size(*freed)}
    rows = ls_rows(reg)
    assert set(rows) == {index, reg.amd}
    # deleting the index keeps amd (tagged on its own): arm's blobs and the index go
    assert rows[index]["exclusive_bytes"] == reg.size(*freed)
    # deleting amd alone: the index still names its manifest blob, so only its config and layer go
    assert rows[reg.amd]["exclusive_bytes"] == reg.size(config_of(reg, reg.amd), sha256(b"amd" * 10))


def test_tagged_index_whose_child_was_deleted(multi):
    reg = multi
    index = reg.index("m", "v1", children=[reg.amd, reg.arm])
    reg.unlink_revision("m", reg.arm)
    graph = opened(reg).graph
    assert names(graph, graph.repos["m"].untagged) == set()
    assert [(f.code, f.value) for f in graph.all_findings()] == [("index-child-missing", reg.arm)]
    # the index still needs arm's manifest blob, but arm's config and layer are needed by nobody
    assert names(graph, graph.orphans()) == {config_of(reg, reg.arm), sha256(b"arm" * 10)}
    assert ls_rows(reg)[index]["bytes"] == reg.size(index, reg.arm, *image_blobs(reg, reg.amd))


def test_index_child_that_is_not_a_revision_here(tmp_path):
    """An index naming a manifest that is a revision of another repository only: the index needs the
    child's blob, not its layers (they are the other repository's)."""
    reg = Reg(tmp_path)
    child = reg.image("other", tag="x", layers=[b"c" * 400])
    index = reg.index("m", "v1", children=[child])
    assert repo_row(reg, "m")["bytes"] == reg.size(index, child)
    assert repo_row(reg, "m")["exclusive_bytes"] == reg.size(index)
    assert repo_row(reg, "other")["exclusive_bytes"] == reg.size(config_of(reg, child)) + 400
    assert ls_rows(reg)[index]["bytes"] == reg.size(index, child)


def test_nested_index(multi):
    reg = multi
    inner = reg.index("m", None, children=[reg.amd])
    outer = reg.index("m", "v1", children=[inner, reg.arm])
    assert untagged(reg, "m") == set()
    rows = ls_rows(reg)
    assert set(rows) == {outer}
    everything = [outer, inner] + image_blobs(reg, reg.amd) + image_blobs(reg, reg.arm)
    assert rows[outer]["bytes"] == reg.size(*everything)


def test_child_shared_by_two_indexes(multi):
    reg = multi
    one = reg.index("m", "one", children=[reg.amd, reg.arm])
    two = reg.index("m", "two", children=[reg.amd])
    rows = ls_rows(reg)
    assert rows[two]["exclusive_bytes"] == reg.size(two)  # amd stays: `one` still reaches it
    assert rows[one]["exclusive_bytes"] == reg.size(one, *image_blobs(reg, reg.arm)) - 1000


# ----------------------------------------------------------------------------------- referrers
def test_referrer_of_a_tagged_image_is_not_untagged(multi):
    reg = multi
    reg.tag("m", "amd", reg.amd)
    sig = reg.artifact("m", reg.amd)
    sig_of_sig = reg.artifact("m", sig, payload=b"countersignature")
    assert untagged(reg, "m") == {reg.arm}
    rows = ls_rows(reg)
    assert rows[sig]["kind"] == "artifact"
    assert rows[sig]["tags"] == []
    assert sig_of_sig in rows


def test_referrer_of_an_untagged_image_is_untagged(multi):
    reg = multi
    sig = reg.artifact("m", reg.arm)
    assert untagged(reg, "m") == {reg.amd, reg.arm, sig}


def test_referrer_of_a_child_of_a_tagged_index_is_not_untagged(multi):
    reg = multi
    reg.index("m", "v1", children=[reg.amd, reg.arm])
    sbom = reg.artifact("m", reg.arm, artifact_type="application/spdx+json", payload=b"sbom")
    assert untagged(reg, "m") == set()
    assert sbom in ls_rows(reg)


def test_referrer_does_not_keep_its_subject(multi):
    reg = multi
    sig = reg.artifact("m", reg.amd, tag="sig")  # a tagged referrer (cosign's older scheme tags them)
    assert untagged(reg, "m") == {reg.amd, reg.arm}
    assert sig not in untagged(reg, "m")


# ------------------------------------------------------------------------------------ sha512 aliases
def test_sha512_layer_resolved_through_the_alias_link(tmp_path):
    reg = Reg(tmp_path)
    d256, d512 = reg.sha512_layer("a", b"5" * 512)
    img = reg.image("a", tag="v1", layers=[BASE, d512])
    graph = opened(reg).graph
    assert graph.all_findings() == []
    assert graph.orphans() == []
    assert ls_rows(reg)[img]["bytes"] == reg.size(img, config_of(reg, img), sha256(BASE), d256)
    assert repo_row(reg, "a")["bytes"] == reg.size(*reg.content)


def test_sha512_alias_only_in_another_repository(tmp_path):
    reg = Reg(tmp_path)
    d256, d512 = reg.sha512_layer("uploader", b"5" * 512)
    img = reg.image("a", tag="v1", layers=[BASE, d512])
    graph = opened(reg).graph
    assert [(f.code, f.value) for f in graph.all_findings()] == [("alias-unresolved", d512)]
    assert names(graph, graph.orphans()) == {d256}  # nothing resolves to it
    assert ls_rows(reg)[img]["bytes"] == reg.size(img, config_of(reg, img), sha256(BASE))


# ----------------------------------------------------------------------------------- shared manifests
def test_manifest_shared_by_two_repositories(tmp_path):
    reg = Reg(tmp_path)
    one = reg.image("a", tag="v1", layers=[BASE, b"x" * 10])
    two = reg.image("b", tag="v1", layers=[BASE, b"x" * 10])
    assert one == two
    assert repo_row(reg, "a")["bytes"] == repo_row(reg, "b")["bytes"] == reg.size(*image_blobs(reg, one))
    assert repo_row(reg, "a")["exclusive_bytes"] == repo_row(reg, "b")["exclusive_bytes"] == 0
    o = opened(reg)
    rows = report.ls(o.graph, o.storage)["images"]
    assert [(r["repository"], r["digest"], r["exclusive_bytes"]) for r in rows] == [("a", one, 0), ("b", one, 0)]
    assert o.graph.orphans() == []


def test_untagged_in_one_repository_tagged_in_another(tmp_path):
    reg = Reg(tmp_path)
    img = reg.image("a", layers=[b"x" * 10])
    reg.image("b", tag="v1", layers=[b"x" * 10])
    assert untagged(reg, "a") == {img}
    assert du(reg)["untagged"] == {"count": 1, "bytes": 0}  # b keeps every blob


# --------------------------------------------------------------------------------------- JSON shapes
@pytest.fixture
def busy(tmp_path):
    """Something of everything, for shapes and reproducibility: many repositories and revisions (more
    than one scan batch), indexes, referrers, damage and housekeeping."""
    reg = Reg(tmp_path)
    for r in range(6):
        repo = f"team{r % 2}/app{r}"
        images = [reg.image(repo, tag=f"v{i}" if i % 3 == 0 else None, layers=[BASE, f"{r}-{i}".encode() * 40],
                            created=f"2025-0{1 + i % 9}-01T00:00:00Z", oci=bool(i % 2)) for i in range(12)]
        reg.index(repo, "multi", children=images[:3])
        reg.artifact(repo, images[0])
    for i in range(70):  # more revisions than one batch of links
        reg.image("many", tag=f"t{i}" if i % 7 == 0 else None, layers=[b"m%d" % i])
    reg.blob(ORPHAN)
    reg.remove_blob(sha256(b"0-1" * 40))
    reg.upload("many", "u1", b"data", startedat=None)
    reg.schema1("legacy", tag="old")
    return reg


def run_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "regprune", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 3), done.stderr
    return done.stdout


def cli_json(reg: Reg, *args: str) -> dict:
    out = run_cli(*args, "--json", "--root", str(reg.root))
    assert out == json.dumps(json.loads(out), indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # keys sorted
    return json.loads(out)


FINDING_KEYS = {"code", "severity", "path", "value"}


def test_du_json_shape(busy):
    """The contract in the README's "JSON formats"."""
    result = cli_json(busy, "du")
    assert set(result) == {"blobs", "orphans", "uploads", "untagged", "trash", "repositories", "findings"}
    for key in ("blobs", "orphans", "uploads", "untagged", "trash"):
        assert set(result[key]) == {"count", "bytes"}
        assert all(type(v) is int for v in result[key].values())
    for row in result["repositories"]:
        assert set(row) == {"name", "tags", "manifests", "untagged", "bytes", "exclusive_bytes"}
        assert type(row["name"]) is str and all(type(row[k]) is int for k in row if k != "name")
    assert [r["name"] for r in result["repositories"]] == [
        r["name"] for r in sorted(result["repositories"], key=lambda r: (-r["bytes"], r["name"]))]
    for f in result["findings"]:
        assert set(f) in (FINDING_KEYS, FINDING_KEYS | {"detail"})
    # du lists _layers/ without opening a link: dangling layer links are check's to report
    assert {f["code"] for f in result["findings"]} == {"blob-missing", "upload-no-startedat", "schema1"}
    assert result["uploads"] == {"count": 1, "bytes": 4}
    assert result["trash"] == {"count": 0, "bytes": 0}
    assert result["orphans"]["bytes"] >= len(ORPHAN)


def test_check_json_shape(busy):
    result = cli_json(busy, "check")
    assert set(result) == {"findings", "counts", "damaged"}
    assert set(result["counts"]) == {"damage", "warning", "housekeeping"}
    assert result["damaged"] is True
    assert sum(result["counts"].values()) == len(result["findings"])


LS_KEYS = {"repository", "digest", "tags", "kind", "media_type", "bytes", "exclusive_bytes", "platforms",
           "created", "pushed"}


def test_ls_json_shape_and_order(busy):
    result = cli_json(busy, "ls")
    assert set(result) == {"images"}
    rows = result["images"]
    assert rows
    for row in rows:
        assert set(row) == LS_KEYS
        assert row["tags"] == sorted(row["tags"])
        assert row["platforms"] == sorted(row["platforms"])
        assert row["kind"] in {"image", "index", "artifact", "schema1", "unknown"}
        assert Digest.try_parse(row["digest"]) is not None
        assert row["pushed"] is not None and row["pushed"].endswith("Z")
        assert row["created"] is None or row["created"].endswith("Z")

    def key(r):
        return (r["repository"], r["tags"][0] if r["tags"] else "\U0010ffff", r["digest"])

    assert [key(r) for r in rows] == sorted(key(r) for r in rows)
    many = [r for r in rows if r["repository"] == "many"]
    tagged = [r for r in many if r["tags"]]
    assert many[:len(tagged)] == tagged  # tagged first (by tag), then untagged (by digest)
    assert [r["tags"][0] for r in tagged] == sorted(f"t{i}" for i in range(0, 70, 7))
    index = next(r for r in rows if r["repository"] == "team0/app0" and r["tags"] == ["multi"])
    assert index["kind"] == "index" and index["media_type"] == OCI_INDEX
    assert index["platforms"] == ["linux/amd64", "linux/arm", "linux/arm64"]
    assert index["created"] == "2025-03-01T00:00:00Z"  # the newest of its children's
    oci_image = next(r for r in rows if r["repository"] == "team0/app0" and r["media_type"] == OCI_MANIFEST
                     and r["kind"] == "image")
    assert oci_image["platforms"] == []
    assert next(r for r in rows if r["repository"] == "legacy")["kind"] == "schema1"


def test_ls_selected_repositories_and_unknown(busy):
    o = opened(busy)
    rows = report.ls(o.graph, o.storage, ["legacy"])["images"]
    assert [(r["repository"], r["tags"], r["kind"]) for r in rows] == [("legacy", ["old"], "schema1")]
    with pytest.raises(report.UsageError):
        report.ls(o.graph, o.storage, ["nope"])


@pytest.mark.parametrize("command", [["du", "--json"], ["ls", "--json"], ["check", "--json"], ["du"], ["ls"]])
def test_output_is_reproducible(busy, command):
    root = ["--root", str(busy.root)]
    first = run_cli(*command, *root, "--workers", "1")
    assert first == run_cli(*command, *root, "--workers", "1")
    assert first == run_cli(*command, *root, "--workers", "32")


# ------------------------------------------------------------------------------- order of findings
def test_findings_order_does_not_depend_on_hash_seed(tmp_path):
    reg = Reg(tmp_path)
    for layer in (b"x", b"y", b"z"):  # three revisions whose blob-missing findings differ only in detail
        reg.image("a", layers=[b"shared", layer])
    reg.remove_blob(sha256(b"shared"))
    outputs = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        done = subprocess.run([sys.executable, "-m", "regprune", "check", "--json", "--root", str(reg.root)],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONHASHSEED=seed))
        assert done.returncode == 3, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_finding_sort_key_orders_by_severity_then_path():
    damage = Finding("blob-missing", "z", "v")
    warning = Finding("schema1", "a", "v")
    housekeeping = Finding("nas-litter", "a", "v")
    assert sorted([housekeeping, warning, damage], key=Finding.sort_key) == [damage, warning, housekeeping]
