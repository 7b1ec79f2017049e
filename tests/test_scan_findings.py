"""One damaged (or untidy) tree per finding code: the scan and the graph report it with its exact code,
path and value, in `du`'s mode (71-byte links whose path names the digest are trusted) and in `check`'s
(every link read), and nothing else. Then `verify_blobs` for the two codes only hashing can find, the
symlink rules, and `check`'s exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from synth import Reg, hex_of, sha256

from regprune.digest import Digest
from regprune.findings import CODES, DAMAGE, HOUSEKEEPING, WARNING, Finding
from regprune.store_access import open_store
from regprune.verify import verify_blobs

V2 = "docker/registry/v2"
REPOS = V2 + "/repositories"

#: Codes only `verify_blobs` reports; every other code has a scan test here.
VERIFY_CODES = {"blob-digest-mismatch", "blob-size-mismatch"}


def found(reg: Reg, read_all: bool) -> list:
    """(code, path, value) of every finding, in the report's order."""
    # read_all: what `check` sees; otherwise what `du` sees (no tag history, _layers only listed)
    graph = open_store(str(reg.root), workers=4, read_all_links=read_all, tag_history=read_all,
                       stat_layer_links=read_all).graph
    return [(f.code, f.path, f.value) for f in graph.all_findings()]


def both(reg: Reg) -> list:
    """Findings that must not depend on the link-reading mode: the same in `du` and `check`, except
    dangling `_layers` links, which only `check` looks for (du lists those directories, never opens them)."""
    trusted, read_all = found(reg, False), found(reg, True)
    assert trusted == [f for f in read_all if f[0] != "layer-link-dangling"]
    return read_all


@pytest.fixture
def reg(tmp_path) -> Reg:
    """A healthy registry: a tagged image, an untagged one, an index, a referrer, an upload."""
    r = Reg(tmp_path / "store")
    app = r.image("lib/app", tag="v1", layers=[b"base layer", b"app layer"])
    r.image("lib/app", layers=[b"base layer", b"old app layer"], created="2025-01-01T00:00:00Z")
    arm = r.image("lib/app", layers=[b"arm base", b"arm app"])
    r.index("lib/app", "multi", children=[app, arm])
    r.artifact("lib/app", subject=app)
    r.image("tools", tag="latest", layers=[b"base layer"], oci=True)
    r.upload("tools", "upload-1", b"partial", "2026-01-01T00:00:00Z")
    return r


def rel(reg: Reg, path) -> str:
    return reg.rel(path)


def test_healthy_registry_has_no_findings(reg):
    assert both(reg) == []


def test_every_code_has_a_test_here():
    with open(__file__, encoding="utf-8") as f:
        below = f.read().split("def test_every_code_has_a_test_here", 1)[1]
    assert {code for code in CODES if f'"{code}"' in below} == set(CODES)


# --------------------------------------------------------------------------------------- link bodies
def test_link_empty(reg):
    img = reg.image("lib/app", layers=[b"soon empty"])
    link = reg.revision_link_path("lib/app", img)
    reg.write_link(link, b"")
    assert both(reg) == [("link-empty", rel(reg, link), "")]


def test_link_empty_tag_current(reg):
    current = reg.tag_path("tools", "latest") / "current" / "link"
    reg.write_link(current, b"")
    assert both(reg) == [("link-empty", rel(reg, current), "")]


def test_link_empty_layer_link_only_when_reading_all(reg):
    """`du` only lists `_layers/sha256/` (a link's presence is all it needs); `check` reads each."""
    layer = reg.layer("tools", b"some upload")
    reg.write_link(reg.layer_link_path("tools", layer), b"")
    assert found(reg, False) == []
    assert found(reg, True) == [("link-empty", rel(reg, reg.layer_link_path("tools", layer)), "")]


def test_link_empty_alias_link(reg):
    """Alias links are always read: their body is the only way to the blob."""
    _, d512 = reg.sha512_layer("tools", b"some sha512 upload")
    reg.write_link(reg.layer_link_path("tools", d512), b"")
    assert both(reg) == [("link-empty", rel(reg, reg.layer_link_path("tools", d512)), "")]


def test_link_empty_in_tag_history_only_when_reading_all(reg):
    history = reg.tag_path("tools", "latest") / "index" / "sha256" / hex_of(reg.tags["tools"]["latest"]) / "link"
    reg.write_link(history, b"")
    assert found(reg, False) == []
    assert found(reg, True) == [("link-empty", rel(reg, history), "")]


@pytest.mark.parametrize("body", [
    pytest.param(lambda d: d + "\n", id="trailing-newline"),
    pytest.param(lambda d: "garbage", id="garbage"),
    pytest.param(lambda d: "sha512:" + "0" * 128, id="sha512-body"),
    pytest.param(lambda d: d[:-1], id="truncated"),
])
def test_link_malformed(reg, body):
    img = reg.image("lib/app", layers=[b"malformed link"])
    link = reg.revision_link_path("lib/app", img)
    text = body(img)
    reg.write_link(link, text)
    assert both(reg) == [("link-malformed", rel(reg, link), text[:100])]  # long bodies are cut


def test_link_malformed_71_bytes_only_when_reading_all(reg):
    img = reg.image("lib/app", layers=[b"malformed link"])
    link = reg.revision_link_path("lib/app", img)
    reg.write_link(link, img.upper())
    assert found(reg, False) == []
    assert found(reg, True) == [("link-malformed", rel(reg, link), img.upper())]


def test_link_malformed_in_tag_current(reg):
    current = reg.tag_path("lib/app", "v1") / "current" / "link"
    text = reg.tags["lib/app"]["v1"] + "\n"
    reg.write_link(current, text)
    assert both(reg) == [("link-malformed", rel(reg, current), text)]


def test_link_malformed_alias_link(reg):
    _, d512 = reg.sha512_layer("tools", b"uploaded with sha512")
    link = reg.layer_link_path("tools", d512)
    reg.write_link(link, d512)  # the body must name the sha256 digest
    assert both(reg) == [("link-malformed", rel(reg, link), d512[:100])]


def test_link_mismatch_revision_only_when_reading_all(reg):
    """A 71-byte link naming another digest than its path: `du` trusts it, `check` catches it."""
    img = reg.image("lib/app", layers=[b"mismatch"])
    other = reg.tags["tools"]["latest"]
    link = reg.revision_link_path("lib/app", img)
    reg.write_link(link, other)
    assert os.path.getsize(link) == 71
    assert found(reg, False) == []
    assert found(reg, True) == [("link-mismatch", rel(reg, link), other)]
    graph = open_store(str(reg.root), read_all_links=True).graph
    mismatch = [f for f in graph.all_findings() if f.code == "link-mismatch"]
    assert mismatch[0].detail == f"path names {img}"


def test_link_mismatch_layer_link_and_history(reg):
    layer = reg.layer("tools", b"a layer")
    other = sha256(b"base layer")
    reg.write_link(reg.layer_link_path("tools", layer), other)
    history = reg.tag_path("lib/app", "v1") / "index" / "sha256" / hex_of(reg.tags["lib/app"]["v1"]) / "link"
    reg.write_link(history, other)
    assert found(reg, False) == []
    assert found(reg, True) == [
        ("link-mismatch", rel(reg, history), other),
        ("link-mismatch", rel(reg, reg.layer_link_path("tools", layer)), other),
    ]


def test_link_mismatch_drops_the_revision_only_in_check(reg):
    img = reg.image("lib/app", layers=[b"mismatch"])
    reg.write_link(reg.revision_link_path("lib/app", img), reg.tags["tools"]["latest"])
    trusted = open_store(str(reg.root), read_all_links=False).graph
    checked = open_store(str(reg.root), read_all_links=True).graph
    assert img in {str(trusted.store.digest(r)) for r in trusted.repos["lib/app"].repo.revisions}
    assert img not in {str(checked.store.digest(r)) for r in checked.repos["lib/app"].repo.revisions}


# ---------------------------------------------------------------------------------- revisions, tags
def test_revision_blob_missing(reg):
    img = reg.image("lib/app", layers=[b"lost manifest"])
    reg.remove_blob(img)
    assert both(reg) == [("revision-blob-missing", rel(reg, reg.revision_link_path("lib/app", img)), img)]


def test_manifest_unparseable(reg):
    bad = reg.manifest("lib/app", b"{not json")
    assert both(reg) == [("manifest-unparseable", rel(reg, reg.blob_path(bad)), bad)]
    graph = open_store(str(reg.root)).graph
    assert [f.detail for f in graph.all_findings()][0].startswith("not JSON")


def test_manifest_unparseable_bad_descriptor(reg):
    bad = reg.manifest("lib/app", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": {"digest": "sha256:../../x", "size": 1}})
    assert both(reg) == [("manifest-unparseable", rel(reg, reg.blob_path(bad)), bad)]


@pytest.mark.parametrize("media_type,value", [("application/x-weird", "application/x-weird"), (None, "(none)")])
def test_manifest_unknown_type(reg, media_type, value):
    doc = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    odd = reg.manifest("lib/app", doc)
    assert both(reg) == [("manifest-unknown-type", rel(reg, reg.revision_link_path("lib/app", odd)), value)]


def test_blob_missing(reg):
    layer = sha256(b"app layer")
    reg.remove_blob(layer)
    img = reg.tags["lib/app"]["v1"]
    assert both(reg) == [
        ("blob-missing", rel(reg, reg.blob_path(layer)), layer),
        ("layer-link-dangling", rel(reg, reg.layer_link_path("lib/app", layer)), layer),
    ]
    graph = open_store(str(reg.root)).graph
    assert graph.all_findings()[0].detail == f"needed by lib/app@{img}"


def test_missing_foreign_layer_is_not_damage(reg):
    reg.image("win", tag="ltsc", layers=[b"app on windows"], foreign_layers=[b"windows base layer"])
    assert sha256(b"windows base layer") not in reg.content
    assert both(reg) == []


def test_alias_unresolved(reg):
    _, d512 = reg.sha512_layer("tools", b"pushed by sha512")
    img = reg.image("lib/app", layers=[d512], config=b'{"alias": true}')
    assert both(reg) == [("alias-unresolved", rel(reg, reg.revision_link_path("lib/app", img)), d512)]


def test_alias_resolved_is_fine(reg):
    _, d512 = reg.sha512_layer("lib/app", b"pushed by sha512")
    reg.image("lib/app", tag="by-512", layers=[d512], config=b'{"alias": true}')
    assert both(reg) == []


def test_blob_missing_behind_an_alias_is_damage(reg):
    d256, d512 = reg.sha512_layer("lib/app", b"pushed by sha512")
    img = reg.image("lib/app", tag="by-512", layers=[d512], config=b'{"alias": true}')
    reg.remove_blob(d256)
    findings = open_store(str(reg.root), read_all_links=True).graph.all_findings()
    assert ("blob-missing", rel(reg, reg.blob_path(d256)), d256) in [(f.code, f.path, f.value) for f in findings]
    assert any(f.severity == DAMAGE for f in findings), f"nothing says {img} cannot be pulled"


def test_index_child_missing(reg):
    elsewhere = reg.image("tools", layers=[b"only in tools"])
    index = reg.index("lib/app", "cross", children=[reg.tags["lib/app"]["v1"], elsewhere])
    assert both(reg) == [("index-child-missing", rel(reg, reg.revision_link_path("lib/app", index)), elsewhere)]
    graph = open_store(str(reg.root)).graph
    assert graph.all_findings()[0].detail == f"child of lib/app@{index}"


def test_tag_target_missing(reg):
    elsewhere = reg.tags["tools"]["latest"]
    reg.tag("lib/app", "wrong", elsewhere)
    current = reg.tag_path("lib/app", "wrong") / "current" / "link"
    assert both(reg) == [("tag-target-missing", rel(reg, current), elsewhere)]


def test_tag_no_current(reg):
    reg.tag("lib/app", "half", reg.tags["lib/app"]["v1"])
    current = reg.tag_path("lib/app", "half") / "current" / "link"
    current.unlink()
    assert both(reg) == [("tag-no-current", rel(reg, current), "half")]


# ---------------------------------------------------------------------------------------------- blobs
def test_blob_outside_layout_bad_prefix(reg):
    (reg.v2 / "blobs" / "sha256" / "zz").mkdir()
    assert both(reg) == [("blob-outside-layout", f"{V2}/blobs/sha256/zz", "zz")]


def test_blob_outside_layout_wrong_prefix(reg):
    digest = sha256(b"misplaced")
    wrong = reg.v2 / "blobs" / "sha256" / ("00" if hex_of(digest)[:2] != "00" else "11") / hex_of(digest)
    reg.write(wrong / "data", b"misplaced")
    assert both(reg) == [("blob-outside-layout", reg.rel(wrong), hex_of(digest))]


def test_blob_outside_layout_data_is_a_directory(reg):
    digest = sha256(b"not a file")
    (reg.blob_path(digest)).mkdir(parents=True)
    assert both(reg) == [("blob-outside-layout", rel(reg, reg.blob_path(digest)), digest)]


def test_blob_outside_layout_other_algorithm(reg):
    (reg.v2 / "blobs" / "sha512" / "ab").mkdir(parents=True)
    assert ("blob-outside-layout", f"{V2}/blobs/sha512", "sha512") in both(reg)


def test_empty_blob_directory_is_absent_not_a_finding(reg):
    digest = reg.blob(b"gone")
    reg.blob_path(digest).unlink()  # the registry's way of deleting leaves <hex>/ behind
    assert both(reg) == []
    store = open_store(str(reg.root)).graph.store
    blob_id = store.lookup(Digest.parse(digest))
    assert blob_id < 0 or not store.stored[blob_id]


def test_layer_link_dangling(reg):
    layer = reg.layer("tools", b"upload whose blob went away")
    reg.remove_blob(layer)
    assert both(reg) == [("layer-link-dangling", rel(reg, reg.layer_link_path("tools", layer)), layer)]


def test_empty_layer_link_directory_is_absent_in_check(reg):
    layer = reg.layer("tools", b"unlinked by DELETE /v2/tools/blobs/<digest>, then collected")
    reg.layer_link_path("tools", layer).unlink()  # the registry leaves <hex>/ behind
    reg.remove_blob(layer)
    assert found(reg, True) == []


def test_empty_layer_link_directory_is_absent_in_du(reg):
    layer = reg.layer("tools", b"unlinked by DELETE /v2/tools/blobs/<digest>, then collected")
    reg.layer_link_path("tools", layer).unlink()
    reg.remove_blob(layer)
    assert found(reg, False) == []


def test_layer_link_dangling_alias(reg):
    d256, d512 = reg.sha512_layer("tools", b"sha512 upload whose blob went away")
    reg.remove_blob(d256)
    assert both(reg) == [
        ("layer-link-dangling", rel(reg, reg.layer_link_path("tools", d256)), d256),
        ("layer-link-dangling", rel(reg, reg.layer_link_path("tools", d512)), d512),
    ]


# --------------------------------------------------------------------------------------- repositories
@pytest.mark.parametrize("name,path,value", [
    ("UPPER", "UPPER", "UPPER"),
    ("-dash", "-dash", "-dash"),
    ("lib/Bad", "lib/Bad", "lib/Bad"),
    ("lib/a__b__", "lib/a__b__", "lib/a__b__"),
    ("localhost:5000", "localhost:5000", "localhost:5000"),
])
def test_invalid_repository_name(reg, name, path, value):
    repo = reg.v2.joinpath("repositories", *name.split("/"))
    (repo / "_layers").mkdir(parents=True)
    (repo / "_manifests").mkdir()
    assert both(reg) == [("invalid-repository-name", f"{REPOS}/{path}", value)]
    assert name not in open_store(str(reg.root)).graph.repos


def test_host_named_repositories_are_valid(reg):
    reg.image("my.host.com/team/app", tag="v1", layers=[b"hosted"])
    reg.image("localhost:5000/x", tag="v1", layers=[b"local"])
    assert both(reg) == []
    assert {"my.host.com/team/app", "localhost:5000/x"} <= set(open_store(str(reg.root)).graph.repos)


def test_nested_repositories(reg):
    reg.image("lib", tag="v1", layers=[b"parent repo"])
    reg.image("lib/app/sub", tag="v1", layers=[b"child repo"])
    assert both(reg) == []
    assert {"lib", "lib/app", "lib/app/sub"} <= set(open_store(str(reg.root)).graph.repos)


def test_repository_invisible_to_2_8(reg):
    reg.image("nolayers", tag="v1", layers=[b"x"])
    shutil.rmtree(reg.repo_path("nolayers") / "_layers")
    assert both(reg) == [("repository-invisible-2.8", f"{REPOS}/nolayers", "nolayers")]


def test_repository_invisible_to_3(reg):
    reg.layer("onlylayers", b"uploaded, never a manifest")
    shutil.rmtree(reg.repo_path("onlylayers") / "_manifests")
    assert not (reg.repo_path("onlylayers") / "_manifests").exists()
    assert both(reg) == [("repository-invisible-3", f"{REPOS}/onlylayers", "onlylayers")]


def test_schema1(reg):
    old = reg.schema1("legacy", layers=[b"l1", b"l1", b"l2"], tag="old")
    assert both(reg) == [("schema1", rel(reg, reg.revision_link_path("legacy", old)), old)]


def test_pull_through_cache(reg):
    (reg.root / "scheduler-state.json").write_text("{}")
    assert both(reg) == [("pull-through-cache", "scheduler-state.json", "scheduler-state.json")]


# ------------------------------------------------------------------------------------- litter, extras
def test_nas_litter(reg):
    (reg.v2 / "repositories" / "@eaDir").mkdir()
    (reg.repo_path("lib/app") / "#recycle").mkdir()
    (reg.v2 / "blobs" / "sha256" / ".DS_Store").write_bytes(b"\0")
    (reg.repo_path("tools") / "_manifests" / "tags" / "._latest").write_bytes(b"\0")
    assert both(reg) == [
        ("nas-litter", f"{V2}/blobs/sha256/.DS_Store", ".DS_Store"),
        ("nas-litter", f"{REPOS}/@eaDir", "@eaDir"),
        ("nas-litter", f"{REPOS}/lib/app/#recycle", "#recycle"),
        ("nas-litter", f"{REPOS}/tools/_manifests/tags/._latest", "._latest"),
    ]
    assert set(open_store(str(reg.root)).graph.repos) == {"lib/app", "tools"}


def test_unexpected_entry(reg):
    reg.write(reg.repo_path("lib/app") / "_manifests" / "junk", b"x")
    reg.write(reg.v2 / "repositories" / "README", b"x")
    (reg.repo_path("lib/app") / "_other").mkdir()
    assert both(reg) == [
        ("unexpected-entry", f"{REPOS}/README", "README"),
        ("unexpected-entry", f"{REPOS}/lib/app/_manifests/junk", "junk"),
        ("unexpected-entry", f"{REPOS}/lib/app/_other", "_other"),
    ]


def test_stray_temporary_beside_a_link_only_when_reading_all(reg):
    img = reg.tags["lib/app"]["v1"]
    tmp = reg.revision_link_path("lib/app", img).parent / "link.5f0c.tmp"
    reg.write(tmp, img.encode())
    assert found(reg, False) == []
    assert found(reg, True) == [("stray-temporary", rel(reg, tmp), "link.5f0c.tmp")]


def test_stray_temporary_in_a_listed_directory(reg):
    tmp = reg.repo_path("tools") / "_layers" / "sha256" / "x.1234.tmp"
    reg.write(tmp, b"")
    assert both(reg) == [("stray-temporary", rel(reg, tmp), "x.1234.tmp")]


def test_stray_temporary_is_only_housekeeping(reg):
    tmp = reg.repo_path("tools") / "_layers" / "sha256" / "x.1234.tmp"
    reg.write(tmp, b"")
    findings = open_store(str(reg.root), read_all_links=True).graph.all_findings()
    assert [f.severity for f in findings] == [HOUSEKEEPING]
    assert run_cli("check", "--root", str(reg.root)).returncode == 0


@pytest.mark.parametrize("startedat", [None, "yesterday", ""])
def test_upload_no_startedat(reg, startedat):
    up = reg.upload("lib/app", "upload-2", b"data", startedat=startedat)
    assert both(reg) == [("upload-no-startedat", rel(reg, up / "startedat"), "upload-2")]


def test_upload_startedat_with_fractional_seconds_is_fine(reg):
    reg.upload("lib/app", "upload-3", b"data", startedat="2026-01-01T00:00:00.123456789Z")
    assert both(reg) == []


# --------------------------------------------------------------------------------------- unreadable
def test_unreadable_oversized_link(reg):
    img = reg.image("lib/app", layers=[b"big link"])
    link = reg.revision_link_path("lib/app", img)
    reg.write_link(link, b"sha256:" + b"0" * 5000)
    assert both(reg) == [("unreadable", rel(reg, link), "larger than 4096 bytes")]


def test_unreadable_directory(reg, monkeypatch):
    from regprune.storage import LocalStorage, StorageError

    real = LocalStorage.list_dir
    target = f"{REPOS}/lib/app/_manifests/tags"

    def failing(self, rel_path):
        if rel_path == target:
            raise StorageError(self.describe(rel_path), "Input/output error")
        return real(self, rel_path)

    monkeypatch.setattr(LocalStorage, "list_dir", failing)
    assert both(reg) == [("unreadable", target, "Input/output error")]


# ------------------------------------------------------------------------------------------ symlinks
def test_symlinked_repository_is_not_followed(reg, tmp_path):
    outside = Reg(tmp_path / "outside")
    evil = outside.image("evil", tag="v1", layers=[b"evil layer"])
    reg.write(reg.blob_path(evil), outside.content[evil])  # its manifest even is a blob of this store
    os.symlink(outside.repo_path("evil"), reg.repo_path("evil"))
    assert both(reg) == [("symlink", f"{REPOS}/evil", "evil")]
    graph = open_store(str(reg.root)).graph
    assert "evil" not in graph.repos
    assert [str(graph.store.digest(b)) for b in graph.orphans()] == [evil]


def test_symlinked_blob_data_is_not_followed(reg):
    layer = reg.layer("tools", b"real layer, linked elsewhere")
    outside = reg.root / "outside-data"
    outside.write_bytes(reg.content[layer])
    reg.blob_path(layer).unlink()
    os.symlink(outside, reg.blob_path(layer))
    assert both(reg) == [
        ("symlink", rel(reg, reg.blob_path(layer)), layer),
        ("layer-link-dangling", rel(reg, reg.layer_link_path("tools", layer)), layer),
    ]


def test_symlinked_link_is_not_followed(reg):
    img = reg.image("lib/app", layers=[b"symlinked link"])
    link = reg.revision_link_path("lib/app", img)
    target = reg.root / "elsewhere-link"
    target.write_text(img)
    link.unlink()
    os.symlink(target, link)
    assert both(reg) == [("symlink", rel(reg, link), "link")]


def test_symlinked_blob_prefix_is_not_followed(reg, tmp_path):
    prefix = reg.v2 / "blobs" / "sha256" / "fe"
    outside = tmp_path / "prefix"
    outside.mkdir()
    assert not prefix.exists()
    os.symlink(outside, prefix)
    assert both(reg) == [("symlink", f"{V2}/blobs/sha256/fe", "fe")]


# ------------------------------------------------------------------------------------------- verify
def verified(reg: Reg) -> list:
    opened = open_store(str(reg.root), read_all_links=True)
    return sorted(verify_blobs(opened.storage, opened.graph, 4), key=Finding.sort_key)


def test_verify_clean_store(reg):
    assert verified(reg) == []


def test_blob_digest_mismatch(reg):
    layer = sha256(b"app layer")
    reg.blob_path(layer).write_bytes(b"app lay3r")  # same size, other content
    assert both(reg) == []  # only hashing can tell
    assert verified(reg) == [Finding("blob-digest-mismatch", rel(reg, reg.blob_path(layer)), layer,
                                     f"content hashes to {sha256(b'app lay3r')}")]


def test_blob_size_mismatch(reg):
    layer = reg.layer("tools", b"twelve bytes")
    config = reg.layer("tools", b'{"os":"linux"}')
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": reg.descriptor(config, "application/vnd.oci.image.config.v1+json"),
           "layers": [dict(reg.descriptor(layer, "application/vnd.oci.image.layer.v1.tar"), size=13)]}
    img = reg.manifest("tools", doc, tag="lying")
    assert both(reg) == []
    assert verified(reg) == [Finding("blob-size-mismatch", rel(reg, reg.blob_path(layer)), layer,
                                     f"stored 12 bytes, {rel(reg, reg.blob_path(img))} declares 13")]


def test_index_child_size_mismatch(reg):
    child = reg.tags["tools"]["latest"]
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [dict(reg.descriptor(child, "application/vnd.oci.image.manifest.v1+json"), size=1)]}
    index = reg.manifest("tools", doc)
    assert verified(reg) == [Finding("blob-size-mismatch", rel(reg, reg.blob_path(child)), child,
                                     f"stored {reg.size(child)} bytes, {rel(reg, reg.blob_path(index))} declares 1")]


def test_severities_of_the_codes():
    assert CODES["blob-digest-mismatch"][0] == DAMAGE
    assert CODES["schema1"][0] == WARNING
    assert CODES["stray-temporary"][0] == HOUSEKEEPING
    assert VERIFY_CODES <= set(CODES)


# --------------------------------------------------------------------------------------------- CLI
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regprune", *args], capture_output=True, text=True,
                          timeout=60)


def test_check_exit_0_on_a_healthy_store(reg):
    done = run_cli("check", "--root", str(reg.root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK: no damage found")


def test_check_exit_0_with_warnings_and_housekeeping(reg):
    reg.schema1("legacy", tag="old")
    reg.upload("lib/app", "upload-2", b"data", startedat=None)
    done = run_cli("check", "--root", str(reg.root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK: no damage found (1 warning(s), 1 housekeeping)")


def test_check_exit_3_on_damage(reg):
    reg.remove_blob(sha256(b"app layer"))
    done = run_cli("check", "--root", str(reg.root))
    assert done.returncode == 3
    assert "blob-missing" in done.stdout
    assert done.stdout.strip().endswith("DAMAGED: 1 finding(s) of damage")


def test_check_exit_3_on_a_mismatch_only_check_sees(reg):
    img = reg.image("lib/app", layers=[b"mismatch"])
    reg.write_link(reg.revision_link_path("lib/app", img), reg.tags["tools"]["latest"])
    assert run_cli("check", "--root", str(reg.root)).returncode == 3


def test_check_verify_digests_exit_3(reg):
    layer = sha256(b"app layer")
    reg.blob_path(layer).write_bytes(b"app lay3r")
    assert run_cli("check", "--root", str(reg.root)).returncode == 0
    done = run_cli("check", "--verify-digests", "--root", str(reg.root))
    assert done.returncode == 3
    assert "blob-digest-mismatch" in done.stdout


@pytest.mark.parametrize("command", ["check", "du", "ls"])
def test_missing_store_exits_4_with_one_line(tmp_path, command):
    missing = tmp_path / "no" / "store"
    done = run_cli(command, "--root", str(missing))
    assert done.returncode == 4
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {missing}: ")
