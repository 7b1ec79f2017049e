"""Parsing manifest bytes into what the graph needs: a kind, references and a subject.

`parse()` takes bytes and returns a `Manifest` or raises `ManifestError`; it never prints and never
touches storage. A manifest of an unknown media type parses into kind `unknown` with no references:
the caller reports it, and deletions refuse to guess what it might need.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import orjson

from . import mediatypes as mt
from .digest import Digest, InvalidDigest

IMAGE = "image"
INDEX = "index"
ARTIFACT = "artifact"
SCHEMA1 = "schema1"
UNKNOWN = "unknown"

#: The registry refuses manifests above 4 MiB; anything larger in a revision is not a manifest.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


class ManifestError(ValueError):
    """Bytes that do not parse as a manifest of a known shape."""


class Descriptor(NamedTuple):
    digest: Digest
    size: int
    media_type: str
    foreign: bool = False  # has `urls`: usually not stored, missing is not damage
    platform: str = ""


class Manifest(NamedTuple):
    kind: str
    media_type: str
    config: Optional[Descriptor]
    layers: Tuple[Descriptor, ...]
    children: Tuple[Descriptor, ...]
    subject: Optional[Descriptor]
    artifact_type: str = ""

    def blob_references(self) -> Tuple[Descriptor, ...]:
        """Descriptors of blobs this manifest needs stored (config, layers), children excluded."""
        return ((self.config,) if self.config else ()) + self.layers


_new_descriptor = tuple.__new__  # Descriptor(...) goes through a Python-level __new__; this is per blob


def _descriptor(obj: object, where: str) -> Descriptor:
    if type(obj) is not dict:
        raise ManifestError(f"{where} is not an object")
    raw = obj.get("digest")
    if type(raw) is not str:
        raise ManifestError(f"{where} has no digest")
    try:
        digest = Digest.parse(raw)
    except InvalidDigest as exc:
        raise ManifestError(f"{where}: {exc}") from None
    size = obj.get("size", -1)
    if type(size) is not int:
        raise ManifestError(f"{where} has a size that is not an integer")
    media_type = obj.get("mediaType", "")
    if type(media_type) is not str:
        raise ManifestError(f"{where} has a mediaType that is not a string")
    platform = obj.get("platform")
    label = ""
    if type(platform) is dict:
        label = "/".join(
            str(platform[k]) for k in ("os", "architecture", "variant") if isinstance(platform.get(k), str)
        )
    return _new_descriptor(Descriptor, (digest, size, media_type, bool(obj.get("urls")), label))


def _descriptors(doc: dict, key: str) -> Tuple[Descriptor, ...]:
    items = doc.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ManifestError(f"{key} is not a list")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items))


def _media_type(doc: dict) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType is not a string")
    if declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1
    # OCI allows omitting mediaType; the shape tells which it is.
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    return ""


def parse(data: bytes) -> Manifest:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("not a JSON object")
    media_type = _media_type(doc)
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None

    if mt.is_image_manifest(media_type):
        if "config" not in doc:
            raise ManifestError("image manifest without config")
        config = _descriptor(doc["config"], "config")
        layers = _descriptors(doc, "layers")
        artifact_type = doc.get("artifactType") or ""
        if not isinstance(artifact_type, str):
            raise ManifestError("artifactType is not a string")
        is_artifact = bool(artifact_type) or not (
            mt.is_image_config(config.media_type) or not config.media_type
        )
        if not is_artifact:
            return Manifest(IMAGE, media_type, config, layers, (), subject)
        return Manifest(ARTIFACT, media_type, config, layers, (), subject, artifact_type or config.media_type)
    if mt.is_index(media_type):
        children = _descriptors(doc, "manifests")
        artifact_type = doc.get("artifactType") or ""
        return Manifest(INDEX, media_type, None, (), children, subject,
                        artifact_type if isinstance(artifact_type, str) else "")
    if mt.is_schema1(media_type):
        fs_layers = doc.get("fsLayers")
        if not isinstance(fs_layers, list):
            raise ManifestError("schema1 manifest without fsLayers")
        layers = []
        for i, item in enumerate(fs_layers):
            if not isinstance(item, dict):
                raise ManifestError(f"fsLayers[{i}] is not an object")
            try:
                layers.append(Descriptor(Digest.parse(str(item.get("blobSum"))), -1, ""))
            except InvalidDigest as exc:
                raise ManifestError(f"fsLayers[{i}]: {exc}") from None
        # schema1 repeats empty layers; the graph wants each blob once, in order
        unique = tuple(dict.fromkeys(layers))
        return Manifest(SCHEMA1, media_type, None, unique, (), None)
    return Manifest(UNKNOWN, media_type, None, (), (), subject)
