"""Self-test of fixtures/: the kit, the scenarios and the committed demo, against the real registry.

Run explicitly: python -m pytest tests/realreg_selftest.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import registry_kit as kit  # noqa: E402
from fixtures.scenarios import SCENARIOS, build_scenario, check_pulls  # noqa: E402

pytestmark = [
    pytest.mark.realreg,
    pytest.mark.skipif(
        not (shutil.which(kit.REGISTRY_BIN) and shutil.which(kit.SKOPEO_BIN)),
        reason="needs docker-registry and skopeo",
    ),
]

V2 = "docker/registry/v2"

# What registry 2.8.2's own GC does on each scenario, pinned so that a change of registry shows.
# Dry run without -m / with -m: "ok" = runs and agrees with the model, "diverges" = runs and lists
# something else, "aborts" = fails and collects nothing.
GC_28 = {
    "demo": ("ok", "diverges"),  # -m deletes the children of tagged indexes and the SBOM pushed by digest
    "tagged_list_untagged_children": ("ok", "diverges"),  # the 2.8 multi-arch bug
    "untagged_list_untagged_children": ("ok", "ok"),
    "untagged_list_tagged_children": ("ok", "ok"),
    "tagged_list_deleted_child": ("ok", "diverges"),
    "nested_index": ("ok", "diverges"),
    "sha512_layer": ("diverges", "diverges"),  # sweeps the layer named by its sha512 digest
    "schema1": ("ok", "ok"),
    "link_empty": ("aborts", "aborts"),
    "link_trailing_newline": ("ok", "aborts"),
    "link_garbage": ("ok", "ok"),
    "link_mismatch": ("diverges", "diverges"),  # follows the body: sweeps v1's blobs
    "manifest_blob_missing": ("diverges", "diverges"),  # skips the revision silently, sweeps its layers
    "manifest_unparseable": ("aborts", "aborts"),
    "manifest_unknown_media_type": ("aborts", "aborts"),
    "blob_missing": ("ok", "ok"),
    "blob_bad_path": ("aborts", "aborts"),
    "repository_bad_name": ("aborts", "aborts"),
    "nas_litter": ("ok", "aborts"),  # .DS_Store in _manifests/tags/ is read as a tag
    "symlinks": ("ok", "ok"),  # it follows the symbolic links
    "repository_no_layers": ("diverges", "diverges"),  # invisible repository: its blobs are swept
    "repository_no_manifests": ("ok", "ok"),
    "proxy_cache": ("ok", "ok"),
    "upload_bad_startedat": ("ok", "ok"),
    "stray_tmp": ("ok", "ok"),
    "untagged_repository": ("ok", "aborts"),
}


def _gc_outcome(gc: dict, model_orphans: list[str]) -> str:
    if not gc["ok"]:
        return "aborts"
    return "ok" if gc["blobs"] == model_orphans else "diverges"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "root"
    expected = build_scenario("demo", root, verify_pulls=True)
    return root, expected


# -- the kit on its own -----------------------------------------------------------------------


def test_layout_builders_are_deterministic_and_share_layers(tmp_path):
    def build(path):
        layout = kit.OciLayout(path)
        base = kit.make_layer("base")
        a = layout.image([base, kit.make_layer("a")], name="a")
        b = layout.image([base, kit.make_layer("b")], fmt="docker", platform=("linux", "arm64", "v8"), name="b")
        idx = layout.index([a, b])
        art = layout.artifact(a)
        return a, b, idx, art

    a, b, idx, art = build(tmp_path / "one")
    again = build(tmp_path / "two")
    assert [m.digest for m in (a, b, idx, art)] == [m.digest for m in again]
    assert a.layer_digests[0] == b.layer_digests[0]
    assert b.media_type == kit.DOCKER_MANIFEST and b.platform == {
        "os": "linux",
        "architecture": "arm64",
        "variant": "v8",
    }
    assert idx.manifest_digests() == {idx.digest, a.digest, b.digest}
    body = json.loads(art.data)
    assert body["subject"]["digest"] == a.digest and body["artifactType"]
    assert body["config"] == {"mediaType": kit.OCI_EMPTY, "digest": kit.EMPTY_JSON_DIGEST, "size": 2}
    assert kit.sha256_digest(b"{}") == kit.EMPTY_JSON_DIGEST
    for digest in idx.blob_digests() | art.blob_digests():
        data = (tmp_path / "one" / "blobs" / "sha256" / digest[7:]).read_bytes()
        assert kit.sha256_digest(data) == digest


def test_server_helpers(tmp_path):
    layout = kit.OciLayout(tmp_path / "layout")
    image = layout.image([kit.make_layer("base"), kit.make_layer("x")], name="x")
    layout.tag("x", image)
    layout.save()
    root = tmp_path / "root"
    with kit.RegistryServer(root) as reg:
        assert reg.push(layout, "x", "a/b", "v1") == image.digest
        assert reg.manifest_digest("a/b", "v1") == image.digest
        assert reg.push(layout, "x", "a/b", None) == image.digest  # by digest
        converted = reg.push(layout, "x", "a/b", "docker", fmt="v2s2")
        assert converted != image.digest
        assert reg.get_manifest("a/b", "docker")[1] == kit.DOCKER_MANIFEST
        assert reg.pull_ok("a/b", "v1") and reg.pull_ok("a/b", image.digest)
        assert not reg.pull_ok("a/b", "nope") and reg.last_pull_error
        uuid = reg.start_abandoned_upload("a/b", b"partial")
        reg.delete_manifest("a/b", image.digest)
        assert reg.manifest_digest("a/b", "v1") is None
        assert reg.tags("a/b") == ["docker"]
        assert reg.catalog() == ["a/b"]
        layer = kit.make_layer("alias")
        d512 = kit.sha512_digest(layer.data)
        assert reg.put_blob("a/b", layer.data, d512) == layer.digest
        assert reg.blob_exists("a/b", d512)
    upload = root / V2 / "repositories/a/b/_uploads" / uuid
    assert (upload / "data").read_bytes() == b"partial"
    assert (upload / "startedat").is_file()
    alias = root / V2 / "repositories/a/b/_layers/sha512" / d512[7:] / "link"
    assert alias.read_text() == layer.digest
    gc = kit.run_gc(root)
    assert image.digest in gc.blobs and layer.digest in gc.blobs
    assert gc.blobs_eligible == len(gc.blobs)


def test_gc_failure_raises_with_output(tmp_path):
    stray = tmp_path / V2 / "blobs/sha256/zz/nothex/data"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    (tmp_path / V2 / "repositories").mkdir()  # without it 2.8's GC aborts earlier ("Path not found")
    with pytest.raises(kit.GcError) as err:
        kit.gc_dry_run(tmp_path)
    assert not err.value.result.ok
    assert "unsupported digest algorithm" in err.value.result.error


def test_tree_snapshot_sees_every_change_and_never_follows_links(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"one")
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (tmp_path / "d" / "l").symlink_to(outside)
    snap = kit.tree_snapshot(tmp_path)
    assert snap["d/l"].kind == "symlink" and snap["d/l"].content == str(outside)
    assert snap["d/f"].content == kit.sha256_digest(b"one")[7:]
    assert kit.tree_snapshot(tmp_path) == snap
    (outside / "inside").write_bytes(b"not ours")
    assert kit.tree_snapshot(tmp_path) == snap
    (tmp_path / "d" / "f").write_bytes(b"two")
    assert kit.snapshot_diff(snap, kit.tree_snapshot(tmp_path))[0].startswith("changed d/f")


# -- the demo ---------------------------------------------------------------------------------


def test_demo_gc_dry_run_finds_exactly_the_deleted_images_blobs(demo):
    root, expected = demo
    deleted = [d for ds in expected["deleted_over_http"].values() for d in ds]
    orphans = set(expected["orphan_blobs"])
    # Each deleted image's manifest blob is an orphan; the shared base layer is not.
    assert set(deleted) <= orphans
    assert kit.make_layer("base-os", files=3).digest not in orphans
    assert kit.gc_dry_run(root) == orphans
    assert len(orphans) == 6


def test_demo_every_tag_pulls(demo):
    _, expected = demo
    assert expected["pull_check"] and all(all(tags.values()) for tags in expected["pull_check"].values())


def test_gc_dry_run_leaves_tree_byte_identical(demo):
    root, _ = demo
    before = kit.tree_snapshot(root)
    kit.run_gc(root)
    kit.run_gc(root, delete_untagged=True, check=False)
    assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == []


def test_demo_has_what_the_brief_lists(demo):
    _, e = demo
    assert {"team/api", "team/web", "tools/ci", "tools/ci/runner"} <= set(e["repositories"])
    media = {m["media_type"] for m in e["manifests"].values()}
    assert {kit.OCI_MANIFEST, kit.OCI_INDEX, kit.DOCKER_MANIFEST, kit.DOCKER_LIST} <= media
    assert e["untagged_revisions"]["team/api"] and e["uploads"]["team/api"]
    assert e["referrers"]["team/api"] and e["kept_untagged_referrers"]["team/api"]
    assert len(e["kept_untagged_children"]["tools/ci/runner"]) == 3


def test_committed_demo_matches_its_expectations(tmp_path):
    expected = json.loads((ROOT / "fixtures" / "demo.expected.json").read_text())
    root = tmp_path / "demo"
    kit.copy_tree_like_git(ROOT / "fixtures" / "demo", root)  # what a fresh clone holds
    assert kit.gc_dry_run(root) == set(expected["orphan_blobs"])
    gc_m = kit.run_gc(root, delete_untagged=True)
    assert gc_m.to_json() == expected["registry_gc"]["dry_run_delete_untagged"]
    before = kit.tree_snapshot(root)
    with kit.RegistryServer(root) as reg:
        check_pulls(reg, expected)
        assert reg.catalog() == expected["repositories"]
        for repo, tags in expected["tags"].items():
            assert reg.tags(repo) == sorted(tags)
            for tag, digest in tags.items():
                assert reg.manifest_digest(repo, tag) == digest
    assert kit.snapshot_diff(before, kit.tree_snapshot(root)) == []


# -- every scenario ---------------------------------------------------------------------------


def test_gc_table_names_every_scenario():
    assert set(GC_28) == set(SCENARIOS)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_builds_and_registry_gc_behaves_as_recorded(name, tmp_path):
    root = tmp_path / "root"
    expected = build_scenario(name, root, with_gc=True, verify_pulls=True)
    json.dumps(expected)  # JSON-ready
    assert expected["scenario"] == name
    for finding in expected["findings"]:
        assert finding["path"].startswith(V2) or finding["path"] == "scheduler-state.json"
        present = Path(root, finding["path"])
        if finding["kind"] not in ("blob_missing",):
            assert present.exists() or present.is_symlink(), finding
        if finding["kind"] == "symlink":
            assert os.readlink(present) == finding["target"]
    gc = expected["registry_gc"]
    got = (
        _gc_outcome(gc["dry_run"], expected["orphan_blobs"]),
        _gc_outcome(gc["dry_run_delete_untagged"], expected["orphan_blobs_delete_untagged"]),
    )
    assert got == GC_28[name], gc
