"""`regprune.layout`: every path kind maps to one exact path and back (a table test, both directions),
names/tags/upload ids are validated before a path is made, and `find_rootdirectory` finds the store."""

from __future__ import annotations

import hashlib
import os

import pytest

from regprune import layout as L
from regprune.digest import Digest, InvalidDigest

H = hashlib.sha256(b"x").hexdigest()
H512 = hashlib.sha512(b"x").hexdigest()
D = Digest("sha256", H)
D512 = Digest("sha512", H512)
R = "docker/registry/v2/repositories"
B = "docker/registry/v2/blobs/sha256"

TABLE = [
    (L.BlobData(D), f"{B}/{H[:2]}/{H}/data"),
    (L.BlobDir(D), f"{B}/{H[:2]}/{H}"),
    (L.BlobPrefix("2d"), f"{B}/2d"),
    (L.RepoDir(""), R),
    (L.RepoDir("app"), f"{R}/app"),
    (L.RepoDir("a/b/c"), f"{R}/a/b/c"),
    (L.RepoDir("my.host.com"), f"{R}/my.host.com"),
    (L.RepoDir("localhost:5000"), f"{R}/localhost:5000"),
    (L.RepoDir("localhost:5000/x"), f"{R}/localhost:5000/x"),
    (L.LayersDir("a/b/c", "sha256"), f"{R}/a/b/c/_layers/sha256"),
    (L.LayersDir("a", "sha512"), f"{R}/a/_layers/sha512"),
    (L.LayerLink("a/b/c", D), f"{R}/a/b/c/_layers/sha256/{H}/link"),
    (L.LayerLink("my.host.com/a", D512), f"{R}/my.host.com/a/_layers/sha512/{H512}/link"),
    (L.LayerLink("localhost:5000/x", D), f"{R}/localhost:5000/x/_layers/sha256/{H}/link"),
    (L.RevisionsDir("a/b/c"), f"{R}/a/b/c/_manifests/revisions/sha256"),
    (L.RevisionLink("a/b/c", D), f"{R}/a/b/c/_manifests/revisions/sha256/{H}/link"),
    (L.RevisionLink("my.host.com/a", D), f"{R}/my.host.com/a/_manifests/revisions/sha256/{H}/link"),
    (L.TagsDir("a/b/c"), f"{R}/a/b/c/_manifests/tags"),
    (L.TagDir("a/b/c", "v1.2-rc_3"), f"{R}/a/b/c/_manifests/tags/v1.2-rc_3"),
    (L.TagDir("a", "_underscore"), f"{R}/a/_manifests/tags/_underscore"),
    (L.TagDir("a", "T" * 128), f"{R}/a/_manifests/tags/{'T' * 128}"),
    (L.TagCurrentLink("a/b/c", "latest"), f"{R}/a/b/c/_manifests/tags/latest/current/link"),
    (L.TagIndexDir("a/b/c", "latest"), f"{R}/a/b/c/_manifests/tags/latest/index/sha256"),
    (L.TagIndexLink("a/b/c", "latest", D), f"{R}/a/b/c/_manifests/tags/latest/index/sha256/{H}/link"),
    (L.UploadsDir("a/b/c"), f"{R}/a/b/c/_uploads"),
    (L.UploadDir("a/b/c", "0f2c-uuid.1"), f"{R}/a/b/c/_uploads/0f2c-uuid.1"),
    (L.UploadStartedAt("a/b/c", "u1"), f"{R}/a/b/c/_uploads/u1/startedat"),
    (L.UploadData("a/b/c", "u1"), f"{R}/a/b/c/_uploads/u1/data"),
]

ALL_KINDS = {
    L.BlobData, L.BlobDir, L.BlobPrefix, L.RepoDir, L.LayersDir, L.LayerLink, L.RevisionsDir, L.RevisionLink,
    L.TagsDir, L.TagDir, L.TagCurrentLink, L.TagIndexDir, L.TagIndexLink, L.UploadsDir, L.UploadDir,
    L.UploadStartedAt, L.UploadData,
}


def _id(item):
    return f"{type(item).__name__}-{'/'.join(str(f)[:16] for f in item)}" if isinstance(item, tuple) else None


@pytest.mark.parametrize("kind,path", TABLE, ids=[_id(k) for k, _ in TABLE])
def test_kind_to_path(kind, path):
    assert kind.path() == path


@pytest.mark.parametrize("kind,path", TABLE, ids=[_id(k) for k, _ in TABLE])
def test_path_to_kind(kind, path):
    assert L.parse_path(path) == kind
    assert type(L.parse_path(path)) is type(kind)
    assert L.parse_path(kind.path()) == kind


def test_table_covers_every_kind():
    assert {type(k) for k, _ in TABLE} == ALL_KINDS


def test_link_size_is_what_the_registry_writes():
    assert L.LINK_SIZE == len(f"sha256:{H}") == 71


# ------------------------------------------------------------------------------------------- names
GOOD_NAMES = ["a", "a/b/c", "my.host.com/a", "localhost:5000/x", "a-b__c.d_e/f--g", "0/1", "x" * 255,
              "My-Host.com:443/a/b"]
BAD_NAMES = ["UPPER", "a/UPPER", "a//b", "_x", "a/_x", "a/../b", "..", ".", "", "a/", "/a", "a-", "-a", "a__",
             "a___b", "a..b", "a:80", "a/b:80", "x" * 256, "a b", "a\nb", "é"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_valid_names(name):
    assert L.valid_repository_name(name)
    assert L.RevisionsDir(name).path() == f"{R}/{name}/_manifests/revisions/sha256"
    assert L.parse_path(L.LayerLink(name, D).path()) == L.LayerLink(name, D)


FULL_NAME_KINDS = [
    lambda n: L.LayersDir(n, "sha256"), lambda n: L.LayerLink(n, D), lambda n: L.RevisionsDir(n),
    lambda n: L.RevisionLink(n, D), lambda n: L.TagsDir(n), lambda n: L.TagDir(n, "t"),
    lambda n: L.TagCurrentLink(n, "t"), lambda n: L.TagIndexDir(n, "t"), lambda n: L.TagIndexLink(n, "t", D),
    lambda n: L.UploadsDir(n), lambda n: L.UploadDir(n, "u"), lambda n: L.UploadStartedAt(n, "u"),
    lambda n: L.UploadData(n, "u"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused(name):
    assert not L.valid_repository_name(name)
    for make in FULL_NAME_KINDS:
        kind = make(name)
        with pytest.raises(L.InvalidName):
            kind.path()
    with pytest.raises(L.InvalidName):
        L.repo_subdir(name, "_manifests")


@pytest.mark.parametrize("name", ["a//b", "_x", "a/../b", "..", "a/", "/a", "a/_layers", "a b"])
def test_repo_dir_refuses_what_no_name_can_start_with(name):
    with pytest.raises(L.InvalidName):
        L.RepoDir(name).path()


@pytest.mark.parametrize("name", ["a/UPPER", "a/b:80"])
def test_repo_dir_allows_a_host_only_first(name):
    with pytest.raises(L.InvalidName):
        L.RepoDir(name).path()


def test_repo_dir_takes_a_host_like_first_component_as_a_partial_name():
    # `UPPER` is not a repository name, but is the first directory of `UPPER/x`, which is one.
    assert L.valid_repository_name("UPPER/x")
    assert L.RepoDir("UPPER").path() == f"{R}/UPPER"


# -------------------------------------------------------------------------------------------- tags
@pytest.mark.parametrize("tag", ["-x", ".x", "x" * 129, "a/b", "", "a b", "a:b", "..", "é", "a\n"])
def test_invalid_tags_are_refused(tag):
    assert not L.valid_tag(tag)
    for kind in (L.TagDir("a", tag), L.TagCurrentLink("a", tag), L.TagIndexDir("a", tag),
                 L.TagIndexLink("a", tag, D)):
        with pytest.raises(L.InvalidName):
            kind.path()


@pytest.mark.parametrize("tag", ["x", "x" * 128, "_x", "1.0", "v1.0-rc.1_b", "LATEST"])
def test_valid_tags(tag):
    assert L.valid_tag(tag)
    assert L.parse_path(L.TagCurrentLink("a", tag).path()) == L.TagCurrentLink("a", tag)


@pytest.mark.parametrize("upload_id", ["..", ".", "a/b", "", "-a", "_a", "a b", "x" * 129])
def test_invalid_upload_ids_are_refused(upload_id):
    for kind in (L.UploadDir("a", upload_id), L.UploadStartedAt("a", upload_id), L.UploadData("a", upload_id)):
        with pytest.raises(L.InvalidName):
            kind.path()


# ----------------------------------------------------------------------------------------- digests
def test_only_sha256_for_blobs_revisions_and_history():
    for kind in (L.BlobData(D512), L.BlobDir(D512), L.RevisionLink("a", D512), L.TagIndexLink("a", "t", D512)):
        with pytest.raises(InvalidDigest):
            kind.path()


def test_layers_dir_refuses_unknown_algorithm():
    with pytest.raises(InvalidDigest):
        L.LayersDir("a", "md5").path()
    with pytest.raises(InvalidDigest):
        L.LayersDir("a", "../x").path()


@pytest.mark.parametrize("prefix", ["2", "2d2", "2D", "zz", "..", ""])
def test_blob_prefix_refuses_non_prefixes(prefix):
    with pytest.raises(L.InvalidName):
        L.BlobPrefix(prefix).path()


# ------------------------------------------------------------------------------------ outside layout
OUTSIDE = [
    "",
    "docker",
    "docker/registry/v2",
    "docker/registry/v2/blobs",
    "docker/registry/v2/blobs/sha256",
    "docker/registry/v2/blobs/sha512/2d/x",
    f"{B}/2D",
    f"{B}/zz",
    f"{B}/ff/{H}",  # hex under the wrong prefix
    f"{B}/{H[:2]}/{H.upper()}",
    f"{B}/{H[:2]}/{H}/data/x",
    f"{B}/{H[:2]}/{H}/other",
    f"{B}/{H[:2]}/{H[:-1]}",
    "scheduler-state.json",
    "regprune/journal",
    "somewhere/else",
    f"{R}/a/",
    f"{R}/a//b",
    f"{R}/a/../b",
    f"{R}/_x",
    f"{R}/UPPER/_layers/sha256/{H}/link",
    f"{R}/a/_layers",
    f"{R}/a/_layers/md5",
    f"{R}/a/_layers/sha256/{H}",
    f"{R}/a/_layers/sha256/{H}/data",
    f"{R}/a/_layers/sha512/{H}/link",  # a sha256 hex in the sha512 directory
    f"{R}/a/_layers/sha256/{H.upper()}/link",
    f"{R}/a/_manifests",
    f"{R}/a/_manifests/revisions",
    f"{R}/a/_manifests/revisions/sha512",
    f"{R}/a/_manifests/revisions/sha256/{H}",
    f"{R}/a/_manifests/revisions/sha256/{H}/link.123.tmp",
    f"{R}/a/_manifests/tags/-x",
    f"{R}/a/_manifests/tags/t/current",
    f"{R}/a/_manifests/tags/t/current/link.tmp",
    f"{R}/a/_manifests/tags/t/index",
    f"{R}/a/_manifests/tags/t/index/sha256/{H}",
    f"{R}/a/_manifests/tags/t/index/sha256/x/link",
    f"{R}/a/_manifests/other",
    f"{R}/a/_uploads/../startedat",
    f"{R}/a/_uploads/u1/hashstates/sha256/0",
    f"{R}/a/_uploads/u1/other",
    f"{R}/a/_other/x",
    f"{R}/a/@eaDir",
]


@pytest.mark.parametrize("path", OUTSIDE)
def test_parse_path_returns_none_outside_the_layout(path):
    assert L.parse_path(path) is None


def test_parse_path_takes_nested_repositories_apart():
    assert L.parse_path(f"{R}/a/b") == L.RepoDir("a/b")
    assert L.parse_path(f"{R}/a/b/_layers/sha256/{H}/link") == L.LayerLink("a/b", D)
    assert L.parse_path(f"{R}/a/_layers/sha256/{H}/link") == L.LayerLink("a", D)


# ---------------------------------------------------------------------------------- the rootdirectory
def _store(tmp_path, inner=("blobs", "repositories")):
    root = tmp_path / "volume1" / "registry"
    for name in inner:
        (root / "docker" / "registry" / "v2" / name).mkdir(parents=True)
    return root


@pytest.mark.parametrize("tail", ["", "docker", "docker/registry", "docker/registry/v2"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_find_rootdirectory_accepts_root_and_its_folders(tmp_path, tail, slash):
    root = _store(tmp_path)
    given = str(root / tail) if tail else str(root)
    assert L.find_rootdirectory(given + slash) == str(root)


@pytest.mark.parametrize("inner", [("blobs",), ("repositories",)])
def test_find_rootdirectory_needs_blobs_or_repositories(tmp_path, inner):
    root = _store(tmp_path, inner)
    assert L.find_rootdirectory(str(root / "docker/registry/v2")) == str(root)


def test_find_rootdirectory_relative_path(tmp_path, monkeypatch):
    root = _store(tmp_path)
    monkeypatch.chdir(root / "docker")
    assert L.find_rootdirectory(".") == str(root)
    assert L.find_rootdirectory("registry") == str(root)


@pytest.mark.parametrize("where", [
    "missing", "empty", "v2-empty", "a-file", "v2-is-a-file", "blobs-is-a-file", "v2-subfolder",
    "parent-of-root", "other-tail",
])
def test_find_rootdirectory_refuses(tmp_path, where):
    root = tmp_path / "r"
    given = root
    if where == "missing":
        given = tmp_path / "nothing-here"
    elif where == "empty":
        root.mkdir()
    elif where == "v2-empty":
        (root / "docker/registry/v2").mkdir(parents=True)
        given = root / "docker/registry/v2"
    elif where == "a-file":
        root.write_text("x")
    elif where == "v2-is-a-file":
        (root / "docker/registry").mkdir(parents=True)
        (root / "docker/registry/v2").write_text("x")
    elif where == "blobs-is-a-file":
        (root / "docker/registry/v2").mkdir(parents=True)
        (root / "docker/registry/v2/blobs").write_text("x")
    elif where == "v2-subfolder":
        root = _store(tmp_path)
        given = root / "docker/registry/v2/blobs"
    elif where == "parent-of-root":
        root = _store(tmp_path)
        given = root.parent
    elif where == "other-tail":
        root = _store(tmp_path)
        (root / "registry").mkdir()
        given = root / "registry"
    with pytest.raises(L.StoreNotFound) as info:
        L.find_rootdirectory(str(given))
    assert info.value.path == os.path.abspath(str(given))


def test_find_rootdirectory_does_not_follow_a_symlinked_v2(tmp_path):
    real = _store(tmp_path)
    root = tmp_path / "other"
    (root / "docker/registry").mkdir(parents=True)
    os.symlink(real / "docker/registry/v2", root / "docker/registry/v2")
    with pytest.raises(L.StoreNotFound):
        L.find_rootdirectory(str(root))
