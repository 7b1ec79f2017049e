"""The registry's filesystem layout: the only module that joins or splits store paths.

Paths are relative to the registry's `rootdirectory` (the storage driver's root)::

    <rootdirectory>/
      scheduler-state.json                      only in a pull-through cache
      regprune/                                 regprune's own folder, never the registry's
        lock                                    held by the one regprune run at work
        runs/<run id>.{json,log}                the journal of each destructive run
        trash/<run id>/docker/registry/v2/...   what a `--trash` run moved out, at its own relative path
      docker/registry/v2/
        blobs/sha256/<hex[:2]>/<hex>/data       every blob: layers, configs and manifests
        repositories/<name...>/                 a name like a/b/c is nested directories
          _layers/<alg>/<hex>/link              the repository may serve this blob; body names the sha256
          _manifests/revisions/sha256/<hex>/link          the manifest exists here (pullable by digest)
          _manifests/tags/<tag>/current/link              what the tag points at now
          _manifests/tags/<tag>/index/sha256/<hex>/link   every manifest the tag ever pointed at
          _uploads/<id>/{data,startedat,hashstates/...}   an upload in progress or abandoned

Each path kind below is a small value with `path()`; `parse_path()` maps a path back to its kind. Names,
tags and digests are validated before any path is made from them.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Optional, Union

from .digest import HEX_LENGTHS, Digest, InvalidDigest, is_hex

V2 = "docker/registry/v2"
BLOBS = V2 + "/blobs"
BLOBS_SHA256 = BLOBS + "/sha256"
REPOSITORIES = V2 + "/repositories"
SCHEDULER_STATE = "scheduler-state.json"
OWN_DIR = "regprune"

LINK_SIZE = len("sha256:") + 64  # what the registry writes: no newline

# distribution's reference grammar: path components of lower-case alphanumerics joined by one
# separator; the first component may instead be a host name with an optional port.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
MAX_NAME_LENGTH = 255


class InvalidName(ValueError):
    pass


def is_path_component(text: str) -> bool:
    return bool(_PATH_COMPONENT.match(text))


def is_domain_component(text: str) -> bool:
    return bool(_DOMAIN.match(text))


def valid_repository_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME_LENGTH:
        return False
    parts = name.split("/")
    if all(is_path_component(p) for p in parts):
        return True
    return len(parts) > 1 and is_domain_component(parts[0]) and all(is_path_component(p) for p in parts[1:])


def valid_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


def valid_upload_id(upload_id: str) -> bool:
    return bool(_UPLOAD_ID.match(upload_id))


def _check_name(name: str) -> str:
    if not valid_repository_name(name):
        raise InvalidName(f"not a valid repository name: {name!r}")
    return name


def _check_tag(tag: str) -> str:
    if not valid_tag(tag):
        raise InvalidName(f"not a valid tag: {tag!r}")
    return tag


def _check_upload(upload_id: str) -> str:
    if not valid_upload_id(upload_id):
        raise InvalidName(f"not a valid upload id: {upload_id!r}")
    return upload_id


# ---------------------------------------------------------------------------------------------- kinds
class BlobData(NamedTuple):
    digest: Digest

    def path(self) -> str:
        return f"{BlobDir(self.digest).path()}/data"


class BlobDir(NamedTuple):
    digest: Digest

    def path(self) -> str:
        d = self.digest
        if d.algorithm != "sha256":
            raise InvalidDigest(f"blobs are stored under sha256 only, not {d}")
        return f"{BLOBS_SHA256}/{d.hex[:2]}/{d.hex}"


class BlobPrefix(NamedTuple):
    prefix: str

    def path(self) -> str:
        if not is_hex(self.prefix, 2):
            raise InvalidName(f"not a blob prefix: {self.prefix!r}")
        return f"{BLOBS_SHA256}/{self.prefix}"


class RepoDir(NamedTuple):
    """A directory on the way to (or holding) a repository; `name` may be a partial name."""

    name: str

    def path(self) -> str:
        if not self.name:
            return REPOSITORIES
        for i, part in enumerate(self.name.split("/")):
            if not (is_path_component(part) or (i == 0 and is_domain_component(part))):
                raise InvalidName(f"not a valid repository name: {self.name!r}")
        return f"{REPOSITORIES}/{self.name}"


class LayersDir(NamedTuple):
    repo: str
    algorithm: str

    def path(self) -> str:
        if self.algorithm not in HEX_LENGTHS:
            raise InvalidDigest(f"unknown digest algorithm {self.algorithm!r}")
        return f"{REPOSITORIES}/{_check_name(self.repo)}/_layers/{self.algorithm}"


class LayerLink(NamedTuple):
    repo: str
    digest: Digest

    def path(self) -> str:
        return f"{LayersDir(self.repo, self.digest.algorithm).path()}/{self.digest.hex}/link"


class RevisionsDir(NamedTuple):
    repo: str

    def path(self) -> str:
        return f"{REPOSITORIES}/{_check_name(self.repo)}/_manifests/revisions/sha256"


class RevisionLink(NamedTuple):
    repo: str
    digest: Digest

    def path(self) -> str:
        if self.digest.algorithm != "sha256":
            raise InvalidDigest(f"revisions are stored under sha256 only, not {self.digest}")
        return f"{RevisionsDir(self.repo).path()}/{self.digest.hex}/link"


class TagsDir(NamedTuple):
    repo: str

    def path(self) -> str:
        return f"{REPOSITORIES}/{_check_name(self.repo)}/_manifests/tags"


class TagDir(NamedTuple):
    repo: str
    tag: str

    def path(self) -> str:
        return f"{TagsDir(self.repo).path()}/{_check_tag(self.tag)}"


class TagCurrentLink(NamedTuple):
    repo: str
    tag: str

    def path(self) -> str:
        return f"{TagDir(self.repo, self.tag).path()}/current/link"


class TagIndexDir(NamedTuple):
    repo: str
    tag: str

    def path(self) -> str:
        return f"{TagDir(self.repo, self.tag).path()}/index/sha256"


class TagIndexLink(NamedTuple):
    repo: str
    tag: str
    digest: Digest

    def path(self) -> str:
        if self.digest.algorithm != "sha256":
            raise InvalidDigest(f"tag history is stored under sha256 only, not {self.digest}")
        return f"{TagIndexDir(self.repo, self.tag).path()}/{self.digest.hex}/link"


class UploadsDir(NamedTuple):
    repo: str

    def path(self) -> str:
        return f"{REPOSITORIES}/{_check_name(self.repo)}/_uploads"


class UploadDir(NamedTuple):
    repo: str
    upload_id: str

    def path(self) -> str:
        return f"{UploadsDir(self.repo).path()}/{_check_upload(self.upload_id)}"


class UploadStartedAt(NamedTuple):
    repo: str
    upload_id: str

    def path(self) -> str:
        return f"{UploadDir(self.repo, self.upload_id).path()}/startedat"


class UploadData(NamedTuple):
    repo: str
    upload_id: str

    def path(self) -> str:
        return f"{UploadDir(self.repo, self.upload_id).path()}/data"


PathKind = Union[
    BlobData, BlobDir, BlobPrefix, RepoDir, LayersDir, LayerLink, RevisionsDir, RevisionLink, TagsDir,
    TagDir, TagCurrentLink, TagIndexDir, TagIndexLink, UploadsDir, UploadDir, UploadStartedAt, UploadData,
]


_FIXED_WORDS = frozenset({"revisions", "tags", "index", "current", "hashstates", "sha256", "sha384", "sha512"})


def repo_subdir(repo: str, reserved: str, *more: str) -> str:
    """A reserved directory of a repository (`_manifests`, `_layers`, `_uploads`) or one of the fixed
    directories below it (`_manifests/revisions`, ...)."""
    if reserved not in ("_manifests", "_layers", "_uploads"):
        raise InvalidName(f"not a reserved repository entry: {reserved!r}")
    for part in more:
        if part not in _FIXED_WORDS:
            raise InvalidName(f"not a fixed layout directory: {part!r}")
    return "/".join((REPOSITORIES, _check_name(repo), reserved) + more)


def link_in(directory: str, hex_: str, length: int = 64) -> str:
    """`<directory>/<hex>/link` for a directory made by a path kind above (RevisionsDir, LayersDir,
    TagIndexDir): the scan's hot path, which has already built the directory once per repository."""
    if not is_hex(hex_, length):
        raise InvalidDigest(f"not {length} lower-case hex digits: {hex_!r}")
    return f"{directory}/{hex_}/link"


def blob_data_hex(hex_: str) -> str:
    """BlobData's path from the bare hex of a sha256 digest (the scan's hot path)."""
    if not is_hex(hex_, 64):
        raise InvalidDigest(f"not 64 lower-case hex digits: {hex_!r}")
    return f"{BLOBS_SHA256}/{hex_[:2]}/{hex_}/data"


def join_repo_name(parent: str, component: str) -> str:
    """The name of the directory `component` below the repository-tree directory `parent`."""
    return f"{parent}/{component}" if parent else component


# --------------------------------------------------------------------------------------- the way back
def _digest_at(algorithm: str, hex_: str) -> Optional[Digest]:
    try:
        return Digest(algorithm, hex_)
    except InvalidDigest:
        return None


def parse_path(rel: str) -> Optional[PathKind]:
    """The path kind a relative path names, or None when it is not part of the layout."""
    if rel == REPOSITORIES:
        return RepoDir("")
    if rel.startswith(BLOBS_SHA256 + "/"):
        parts = rel[len(BLOBS_SHA256) + 1:].split("/")
        if len(parts) == 1 and is_hex(parts[0], 2):
            return BlobPrefix(parts[0])
        if len(parts) in (2, 3) and is_hex(parts[0], 2) and parts[1][:2] == parts[0]:
            d = _digest_at("sha256", parts[1])
            if d is None:
                return None
            if len(parts) == 2:
                return BlobDir(d)
            return BlobData(d) if parts[2] == "data" else None
        return None
    if not rel.startswith(REPOSITORIES + "/"):
        return None
    parts = rel[len(REPOSITORIES) + 1:].split("/")
    cut = next((i for i, p in enumerate(parts) if p.startswith("_")), len(parts))
    name, rest = "/".join(parts[:cut]), parts[cut:]
    if not rest:
        try:
            RepoDir(name).path()
        except InvalidName:
            return None
        return RepoDir(name)
    if not valid_repository_name(name):
        return None
    kinds = _parse_repo_rest(name, rest)
    return kinds


def _parse_repo_rest(name: str, rest: list) -> Optional[PathKind]:
    head = rest[0]
    n = len(rest)
    if head == "_layers":
        if n == 2 and rest[1] in HEX_LENGTHS:
            return LayersDir(name, rest[1])
        if n == 4 and rest[1] in HEX_LENGTHS and rest[3] == "link":
            d = _digest_at(rest[1], rest[2])
            return LayerLink(name, d) if d else None
        return None
    if head == "_manifests":
        if rest[1:] == ["revisions", "sha256"]:
            return RevisionsDir(name)
        if n == 5 and rest[1:3] == ["revisions", "sha256"] and rest[4] == "link":
            d = _digest_at("sha256", rest[3])
            return RevisionLink(name, d) if d else None
        if n >= 2 and rest[1] == "tags":
            if n == 2:
                return TagsDir(name)
            tag = rest[2]
            if not valid_tag(tag):
                return None
            tail = rest[3:]
            if not tail:
                return TagDir(name, tag)
            if tail == ["current", "link"]:
                return TagCurrentLink(name, tag)
            if tail == ["index", "sha256"]:
                return TagIndexDir(name, tag)
            if len(tail) == 4 and tail[:2] == ["index", "sha256"] and tail[3] == "link":
                d = _digest_at("sha256", tail[2])
                return TagIndexLink(name, tag, d) if d else None
        return None
    if head == "_uploads":
        if n == 1:
            return UploadsDir(name)
        if not valid_upload_id(rest[1]):
            return None
        if n == 2:
            return UploadDir(name, rest[1])
        if n == 3 and rest[2] == "startedat":
            return UploadStartedAt(name, rest[1])
        if n == 3 and rest[2] == "data":
            return UploadData(name, rest[1])
    return None


# ------------------------------------------------------------------------------------ finding the store
class StoreNotFound(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def find_rootdirectory(path: str) -> str:
    """The registry `rootdirectory` for PATH, which may also be its `docker/`, `docker/registry/` or
    `docker/registry/v2/` folder. A store has `docker/registry/v2` holding `blobs` or `repositories`."""
    here = os.path.abspath(path)
    tails = ["", "docker", "docker/registry", "docker/registry/v2"]
    for tail in tails:
        if tail and not here.endswith("/" + tail):
            continue
        root = here[: len(here) - len(tail) - 1] if tail else here
        v2 = os.path.join(root, V2)
        if os.path.isdir(v2) and not os.path.islink(v2):
            if os.path.isdir(os.path.join(v2, "blobs")) or os.path.isdir(os.path.join(v2, "repositories")):
                return root or "/"
    raise StoreNotFound(here)


def entry_path(directory: str, name: str) -> str:
    """The path of an entry found by listing `directory` (for findings; never to build a layout path)."""
    return f"{directory}/{name}"


def parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0]


# --------------------------------------------------------------------------------- regprune's own folder
_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}\Z")
LOCK = OWN_DIR + "/lock"
RUNS = OWN_DIR + "/runs"
TRASH = OWN_DIR + "/trash"


def valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id))


class RunJournal(NamedTuple):
    run_id: str

    def path(self) -> str:
        if not valid_run_id(self.run_id):
            raise InvalidName(f"not a run id: {self.run_id!r}")
        return f"{RUNS}/{self.run_id}.json"


class RunLog(NamedTuple):
    run_id: str

    def path(self) -> str:
        if not valid_run_id(self.run_id):
            raise InvalidName(f"not a run id: {self.run_id!r}")
        return f"{RUNS}/{self.run_id}.log"


class TrashRun(NamedTuple):
    """The folder of one `--trash` run: everything it moved out of the store."""

    run_id: str

    def path(self) -> str:
        if not valid_run_id(self.run_id):
            raise InvalidName(f"not a run id: {self.run_id!r}")
        return f"{TRASH}/{self.run_id}"


def in_store(rel: str) -> bool:
    """Whether `rel` is a plain relative path inside `docker/registry/v2` (no empty, `.` or `..` part)."""
    if rel != V2 and not rel.startswith(V2 + "/"):
        return False
    return all(part not in ("", ".", "..") and "\0" not in part for part in rel.split("/"))


class TrashEntry(NamedTuple):
    """Where a `--trash` run keeps an entry it moved out of the store: the same relative path (one made
    by this module, or found by listing one), below the run's folder."""

    run_id: str
    rel: str

    def path(self) -> str:
        if not in_store(self.rel):
            raise InvalidName(f"not a path inside {V2}: {self.rel!r}")
        return f"{TrashRun(self.run_id).path()}/{self.rel}"
