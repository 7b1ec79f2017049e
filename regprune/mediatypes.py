"""Media types: an open set of strings with predicates.

An unknown media type is still a value (it is reported), never silently a leaf of the graph.
"""

from __future__ import annotations

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_LIST, OCI_INDEX})
SCHEMA1 = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
IMAGE_CONFIGS = frozenset({DOCKER_CONFIG, OCI_CONFIG})


def is_image_manifest(media_type: str) -> bool:
    return media_type in IMAGE_MANIFESTS


def is_index(media_type: str) -> bool:
    return media_type in INDEXES


def is_schema1(media_type: str) -> bool:
    return media_type in SCHEMA1


def is_manifest(media_type: str) -> bool:
    """Whether a descriptor of this media type points at another manifest."""
    return media_type in IMAGE_MANIFESTS or media_type in INDEXES or media_type in SCHEMA1


def is_image_config(media_type: str) -> bool:
    return media_type in IMAGE_CONFIGS
