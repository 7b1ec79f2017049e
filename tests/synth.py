"""Small registry trees written straight into the filesystem layout, for tests.

::

    reg = Reg(tmp_path)
    img = reg.image("lib/app", tag="v1", layers=[b"base layer", b"app layer"])
    arm = reg.image("lib/app", layers=[b"base layer", b"arm layer"])
    reg.index("lib/app", "multi", children=[img, arm])
    reg.artifact("lib/app", subject=img)
    open_store(str(reg.root))

Everything is written the way registry 2.8 writes it: each blob under the sha256 of its bytes, links
exactly `sha256:<64 hex>` (71 bytes, no newline), a manifest as a blob plus a revision link, the blobs
an image needs linked under `_layers`, a tag as `current/link` plus an `index/` history entry.
Paths are built here by hand, not with `regprune.layout`, so tests also check the layout.

The writer remembers what it wrote (`content`, `docs`, `revisions`, `tags`, `aliases`) so a test can
compute what it expects without asking regprune. To damage a tree, write through `write()` or
`write_link()` (which takes any body) or remove things with `remove_blob()` / `unlink_revision()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

V2 = "docker/registry/v2"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

EMPTY_JSON = b"{}"
ARCHES = ("amd64", "arm64", "arm", "386", "ppc64le", "s390x")
STARTED_AT = "2026-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[1]


def canonical(doc: dict) -> bytes:
    """Compact JSON with sorted keys: the same document always has the same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class Reg:
    """A registry tree under `root` (the registry's `rootdirectory`)."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.v2 = self.root / V2
        (self.v2 / "blobs").mkdir(parents=True, exist_ok=True)
        (self.v2 / "repositories").mkdir(parents=True, exist_ok=True)
        self.content: Dict[str, bytes] = {}  # sha256 digest -> bytes of every blob stored now
        self.sizes: Dict[str, int] = {}  # every digest ever written (removed blobs, sha512 aliases and
        #                                  foreign layers too), so expected sizes stay computable
        self.docs: Dict[str, dict] = {}  # manifest digest -> its JSON document
        self.media_types: Dict[str, str] = {}  # manifest digest -> media type
        self.revisions: Dict[str, Dict[str, None]] = {}  # repo -> revision digests (ordered set)
        self.tags: Dict[str, Dict[str, str]] = {}  # repo -> tag -> digest of current
        self.aliases: Dict[str, Dict[str, str]] = {}  # repo -> sha512 digest -> sha256 digest

    # ------------------------------------------------------------------------------------------- paths
    def blob_dir(self, digest: str) -> Path:
        h = hex_of(digest)
        return self.v2 / "blobs" / "sha256" / h[:2] / h

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir(digest) / "data"

    def repo_path(self, repo: str) -> Path:
        return self.v2.joinpath("repositories", *repo.split("/"))

    def layer_link_path(self, repo: str, digest: str) -> Path:
        alg, h = digest.split(":", 1)
        return self.repo_path(repo) / "_layers" / alg / h / "link"

    def revision_link_path(self, repo: str, digest: str) -> Path:
        return self.repo_path(repo) / "_manifests" / "revisions" / "sha256" / hex_of(digest) / "link"

    def tag_path(self, repo: str, tag: str) -> Path:
        return self.repo_path(repo) / "_manifests" / "tags" / tag

    def upload_path(self, repo: str, upload_id: str) -> Path:
        return self.repo_path(repo) / "_uploads" / upload_id

    def rel(self, path: Path) -> str:
        """`path` relative to the root, `/`-separated (how regprune names paths in findings)."""
        return path.relative_to(self.root).as_posix()

    # ------------------------------------------------------------------------------------- raw writing
    def write(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def write_link(self, path: Path, body: Union[str, bytes]) -> Path:
        """A link file; `body` is a digest (written exactly, no newline) or any bytes (for damage)."""
        return self.write(path, body.encode() if isinstance(body, str) else body)

    def repo(self, repo: str, layers: bool = True, manifests: bool = True) -> Path:
        """The repository's directory, with `_layers/` and `_manifests/` as the registry makes them. Every
        writer below calls this, so remove one of them (e.g. for `repository-invisible-2.8`) last."""
        path = self.repo_path(repo)
        if layers:
            (path / "_layers").mkdir(parents=True, exist_ok=True)
        if manifests:
            (path / "_manifests").mkdir(parents=True, exist_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------------------------------- blobs
    def blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.write(self.blob_path(digest), data)
        self.content[digest] = data
        self.sizes[digest] = len(data)
        return digest

    def remove_blob(self, digest: str) -> None:
        """Delete a blob the way regprune and the registry do: its whole `<hex>/` directory."""
        shutil.rmtree(self.blob_dir(digest))
        self.content.pop(digest, None)

    def set_blob_mtime(self, digest: str, when: float) -> None:
        os.utime(self.blob_path(digest), (when, when))

    def size(self, *digests: str) -> int:
        """Total size of the given digests (each counted once)."""
        return sum(self.sizes[d] for d in set(digests))

    def layer(self, repo: str, data: bytes) -> str:
        """A blob uploaded into `repo`: stored and linked under `_layers/sha256`."""
        digest = self.blob(data)
        self.repo(repo)
        self.write_link(self.layer_link_path(repo, digest), digest)
        return digest

    def sha512_layer(self, repo: str, data: bytes) -> Tuple[str, str]:
        """A blob uploaded with a sha512 digest: stored under sha256, linked under both algorithms, the
        sha512 link's body naming the sha256 digest. Returns (sha256 digest, sha512 digest)."""
        d256 = self.layer(repo, data)
        d512 = sha512(data)
        self.write_link(self.layer_link_path(repo, d512), d256)
        self.sizes[d512] = len(data)
        self.aliases.setdefault(repo, {})[d512] = d256
        return d256, d512

    # --------------------------------------------------------------------------------------- manifests
    def manifest(self, repo: str, doc: Union[dict, bytes], tag: Optional[str] = None) -> str:
        """Store a manifest (a JSON document, or any bytes) as a blob and a revision of `repo`."""
        data = canonical(doc) if isinstance(doc, dict) else doc
        digest = self.blob(data)
        if isinstance(doc, dict):
            self.docs[digest] = doc
            self.media_types[digest] = doc.get("mediaType", "")
        self.repo(repo)
        self.write_link(self.revision_link_path(repo, digest), digest)
        self.revisions.setdefault(repo, {})[digest] = None
        if tag is not None:
            self.tag(repo, tag, digest)
        return digest

    def descriptor(self, digest: str, media_type: str, **extra) -> dict:
        return dict({"mediaType": media_type, "digest": digest, "size": self.sizes[digest]}, **extra)

    def _layer_descriptor(self, repo: str, layer: Union[bytes, str], media_type: str) -> dict:
        if isinstance(layer, bytes):
            layer = self.layer(repo, layer)
        return self.descriptor(layer, media_type)

    def image(self, repo: str, tag: Optional[str] = None, layers: Sequence[Union[bytes, str]] = (b"layer",),
              config: Optional[bytes] = None, oci: bool = False, created: Optional[str] = None,
              foreign_layers: Sequence[bytes] = ()) -> str:
        """A single-platform image. `layers` are contents (stored and linked here) or digests written
        before (e.g. a sha512 alias). The default config depends only on the layers (and `created`), so
        the same call in two repositories makes the same manifest; pass `config` to tell images apart.
        `foreign_layers` get `urls` and are not stored, as with Windows base layers."""
        manifest_type, config_type, layer_type = (
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER) if oci else (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER))
        descriptors = [self._layer_descriptor(repo, layer, layer_type) for layer in layers]
        for data in foreign_layers:
            digest = sha256(data)
            self.sizes[digest] = len(data)
            descriptors.append(self.descriptor(digest, DOCKER_FOREIGN_LAYER,
                                               urls=[f"https://example.invalid/{hex_of(digest)}"]))
        if config is None:
            doc = {"architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]}}
            if created is not None:
                doc["created"] = created
            config = canonical(doc)
        config_digest = self.layer(repo, config)
        return self.manifest(repo, {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": self.descriptor(config_digest, config_type),
            "layers": descriptors,
        }, tag)

    def index(self, repo: str, tag: Optional[str] = None, children: Sequence[str] = (), oci: bool = True,
              platforms: Optional[Sequence[str]] = None) -> str:
        """A multi-platform index (OCI) or manifest list (Docker) over manifests written before.
        `platforms` are `os/arch` labels; by default each child gets its own architecture."""
        entries = []
        for i, child in enumerate(children):
            label = platforms[i] if platforms is not None else f"linux/{ARCHES[i % len(ARCHES)]}"
            os_name, arch = label.split("/", 1)
            entries.append(self.descriptor(child, self.media_types.get(child, OCI_MANIFEST),
                                           platform={"os": os_name, "architecture": arch}))
        return self.manifest(repo, {"schemaVersion": 2, "mediaType": OCI_INDEX if oci else DOCKER_LIST,
                                    "manifests": entries}, tag)

    def artifact(self, repo: str, subject: str, tag: Optional[str] = None,
                 artifact_type: str = "application/vnd.example.signature+json",
                 payload: Optional[bytes] = None) -> str:
        """An OCI 1.1 referrer of `subject`: artifactType, the empty `{}` config, one payload layer."""
        empty = self.layer(repo, EMPTY_JSON)
        data = self.layer(repo, payload if payload is not None else f"signature of {subject}".encode())
        return self.manifest(repo, {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": self.descriptor(empty, OCI_EMPTY),
            "layers": [self.descriptor(data, "application/octet-stream")],
            "subject": self.descriptor(subject, self.media_types.get(subject, OCI_MANIFEST)),
        }, tag)

    def schema1(self, repo: str, layers: Sequence[bytes] = (b"layer",), tag: Optional[str] = None) -> str:
        """An unsigned schema1 manifest (fsLayers newest first, as the registry stores its payload)."""
        sums = [{"blobSum": self.layer(repo, data)} for data in reversed(layers)]
        return self.manifest(repo, {"schemaVersion": 1, "name": repo, "tag": tag or "latest",
                                    "architecture": "amd64", "fsLayers": sums,
                                    "history": [{"v1Compatibility": "{}"} for _ in sums]}, tag)

    # -------------------------------------------------------------------------------------------- tags
    def tag(self, repo: str, tag: str, digest: str) -> None:
        """Point `tag` at `digest`: `current/link`, plus a history entry (older ones stay)."""
        path = self.tag_path(repo, tag)
        self.write_link(path / "current" / "link", digest)
        self.write_link(path / "index" / "sha256" / hex_of(digest) / "link", digest)
        self.tags.setdefault(repo, {})[tag] = digest

    def untag(self, repo: str, tag: str) -> None:
        shutil.rmtree(self.tag_path(repo, tag))
        self.tags.get(repo, {}).pop(tag, None)

    def unlink_revision(self, repo: str, digest: str) -> None:
        """Remove a revision link the registry's way: the `link` file goes, its `<hex>/` stays."""
        self.revision_link_path(repo, digest).unlink()
        self.revisions.get(repo, {}).pop(digest, None)

    # ----------------------------------------------------------------------------------------- uploads
    def upload(self, repo: str, upload_id: str, data: bytes = b"", startedat: Optional[str] = STARTED_AT) -> Path:
        """An upload in progress (or abandoned); `startedat=None` leaves that file out."""
        path = self.upload_path(repo, upload_id)
        self.repo(repo)
        self.write(path / "data", data)
        if startedat is not None:
            self.write(path / "startedat", startedat.encode())
        return path

    # ----------------------------------------------------------------------------------------- reading
    def references(self, digest: str) -> Tuple[List[str], List[str], Optional[str]]:
        """(config and layer digests, child digests, subject digest) of a manifest written here."""
        doc = self.docs.get(digest, {})
        blobs = [doc["config"]["digest"]] if isinstance(doc.get("config"), dict) else []
        blobs += [d["digest"] for d in doc.get("layers", ())]
        blobs += [d["blobSum"] for d in doc.get("fsLayers", ())]
        children = [d["digest"] for d in doc.get("manifests", ())]
        subject = doc["subject"]["digest"] if isinstance(doc.get("subject"), dict) else None
        return blobs, children, subject

    def stored(self) -> Iterable[str]:
        return sorted(self.content)
