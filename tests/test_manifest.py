"""`regprune.manifest.parse`: bytes in, kind / references / subject out, `ManifestError` for garbage."""

from __future__ import annotations

import hashlib
import json

import pytest

from regprune import manifest as M
from regprune import mediatypes as mt
from regprune.digest import Digest


def dg(seed: str, algorithm: str = "sha256") -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, seed.encode()).hexdigest()


def desc(seed: str, media_type: str, size: int = 10, **extra) -> dict:
    return dict({"mediaType": media_type, "digest": dg(seed), "size": size}, **extra)


def parse(doc) -> M.Manifest:
    return M.parse(json.dumps(doc).encode())


def digests(descriptors) -> list:
    return [str(d.digest) for d in descriptors]


CONFIG = desc("config", mt.DOCKER_CONFIG, 1469)
LAYERS = [desc("l1", "application/vnd.docker.image.rootfs.diff.tar.gzip", 100),
          desc("l2", "application/vnd.docker.image.rootfs.diff.tar.gzip", 200)]


def test_docker_schema2():
    m = parse({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG, "layers": LAYERS})
    assert m.kind == M.IMAGE
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.config == M.Descriptor(Digest.parse(dg("config")), 1469, mt.DOCKER_CONFIG)
    assert digests(m.layers) == [dg("l1"), dg("l2")]
    assert [d.size for d in m.layers] == [100, 200]
    assert m.children == () and m.subject is None and m.artifact_type == ""
    assert digests(m.blob_references()) == [dg("config"), dg("l1"), dg("l2")]


@pytest.mark.parametrize("with_media_type", [True, False])
def test_oci_manifest(with_media_type):
    doc = {"schemaVersion": 2, "config": desc("config", mt.OCI_CONFIG, 5),
           "layers": [desc("l1", "application/vnd.oci.image.layer.v1.tar+gzip")]}
    if with_media_type:
        doc["mediaType"] = mt.OCI_MANIFEST
    m = parse(doc)
    assert (m.kind, m.media_type) == (M.IMAGE, mt.OCI_MANIFEST)
    assert str(m.config.digest) == dg("config")
    assert digests(m.layers) == [dg("l1")]


def test_oci_manifest_without_layers():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": desc("c", mt.OCI_CONFIG)})
    assert m.kind == M.IMAGE and m.layers == ()


@pytest.mark.parametrize("media_type,with_field", [
    (mt.OCI_INDEX, True), (mt.OCI_INDEX, False), (mt.DOCKER_LIST, True),
])
def test_index_and_manifest_list(media_type, with_field):
    child_type = mt.OCI_MANIFEST if media_type == mt.OCI_INDEX else mt.DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "manifests": [
        desc("amd", child_type, platform={"os": "linux", "architecture": "amd64"}),
        desc("arm", child_type, platform={"os": "linux", "architecture": "arm", "variant": "v7"}),
        desc("unknown", child_type),
    ]}
    if with_field:
        doc["mediaType"] = media_type
    m = parse(doc)
    assert (m.kind, m.media_type) == (M.INDEX, media_type)
    assert digests(m.children) == [dg("amd"), dg("arm"), dg("unknown")]
    assert [c.platform for c in m.children] == ["linux/amd64", "linux/arm/v7", ""]
    assert [c.media_type for c in m.children] == [child_type] * 3
    assert m.config is None and m.layers == () and m.blob_references() == ()


def test_nested_index():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        desc("inner-index", mt.OCI_INDEX), desc("image", mt.OCI_MANIFEST, platform={"os": "linux",
                                                                                   "architecture": "s390x"}),
    ]})
    assert m.kind == M.INDEX
    assert digests(m.children) == [dg("inner-index"), dg("image")]
    assert m.children[0].media_type == mt.OCI_INDEX


def test_empty_index():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
    assert m.kind == M.INDEX and m.children == ()


def test_oci_artifact_with_subject():
    subject = desc("image", mt.OCI_MANIFEST, 527)
    m = parse({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [desc("sig", "application/vnd.dev.cosign.simplesigning.v1+json", 242)],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    })
    assert m.kind == M.ARTIFACT
    assert m.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert m.config == M.Descriptor(Digest.of(b"{}"), 2, mt.OCI_EMPTY)
    assert str(m.config.digest) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert digests(m.layers) == [dg("sig")]
    assert m.subject == M.Descriptor(Digest.parse(dg("image")), 527, mt.OCI_MANIFEST)
    assert digests(m.blob_references()) == [str(Digest.of(b"{}")), dg("sig")]


def test_artifact_by_config_media_type_only():
    # OCI 1.0-style artifact (e.g. a Helm chart): no artifactType, a config that is not an image config.
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
               "config": desc("chart-config", "application/vnd.cncf.helm.config.v1+json"),
               "layers": [desc("chart", "application/vnd.cncf.helm.chart.content.v1.tar+gzip")]})
    assert m.kind == M.ARTIFACT
    assert m.artifact_type == "application/vnd.cncf.helm.config.v1+json"


def test_image_with_subject_stays_an_image():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": desc("c", mt.OCI_CONFIG),
               "layers": [], "subject": desc("base", mt.OCI_MANIFEST)})
    assert m.kind == M.IMAGE
    assert str(m.subject.digest) == dg("base")


def test_index_with_subject():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "artifactType": "application/x-sbom",
               "manifests": [desc("a", mt.OCI_MANIFEST)], "subject": desc("base", mt.OCI_INDEX)})
    assert m.kind == M.INDEX
    assert m.artifact_type == "application/x-sbom"
    assert str(m.subject.digest) == dg("base")


@pytest.mark.parametrize("media_type", [None, mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED])
def test_schema1_deduplicates_repeated_blob_sums(media_type):
    doc = {"schemaVersion": 1, "name": "a", "tag": "latest", "architecture": "amd64",
           "fsLayers": [{"blobSum": dg("empty")}, {"blobSum": dg("top")}, {"blobSum": dg("empty")},
                        {"blobSum": dg("base")}, {"blobSum": dg("empty")}],
           "history": [{"v1Compatibility": "{}"}] * 5}
    if media_type is not None:
        doc["mediaType"] = media_type
    m = parse(doc)
    assert m.kind == M.SCHEMA1
    assert m.media_type == (media_type or mt.DOCKER_SCHEMA1)
    assert digests(m.layers) == [dg("empty"), dg("top"), dg("base")]
    assert all(d.size == -1 for d in m.layers)
    assert m.config is None and m.children == () and m.subject is None


def test_foreign_layers_are_marked():
    m = parse({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG, "layers": [
        desc("windows-base", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 1000,
             urls=["https://mcr.microsoft.com/v2/windows/blobs/x"]),
        desc("app", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        desc("empty-urls", "application/vnd.docker.image.rootfs.diff.tar.gzip", urls=[]),
    ]})
    assert [(str(d.digest), d.foreign) for d in m.layers] == [
        (dg("windows-base"), True), (dg("app"), False), (dg("empty-urls"), False)]


def test_sha512_references_parse():
    m = parse({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": desc("c", mt.OCI_CONFIG),
               "layers": [{"mediaType": "x", "digest": dg("big", "sha512"), "size": 3}]})
    assert m.layers[0].digest == Digest.parse(dg("big", "sha512"))


@pytest.mark.parametrize("media_type", ["application/vnd.example.thing+json", "text/plain"])
def test_unknown_media_type(media_type):
    m = parse({"schemaVersion": 2, "mediaType": media_type, "config": CONFIG, "layers": LAYERS})
    assert m.kind == M.UNKNOWN
    assert m.media_type == media_type
    assert m.config is None and m.layers == () and m.children == ()


@pytest.mark.parametrize("doc", [{}, {"schemaVersion": 2}, {"schemaVersion": 2, "layers": LAYERS}])
def test_shapeless_document_is_unknown(doc):
    m = parse(doc)
    assert (m.kind, m.media_type) == (M.UNKNOWN, "")


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="text"),
    pytest.param(b'{"schemaVersion": 2,', id="truncated"),
    pytest.param(b"\xff\xfe{}", id="binary"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"manifest"', id="string"),
    pytest.param(b"2", id="number"),
    pytest.param(b"null", id="null"),
])
def test_invalid_json_or_not_an_object(data):
    with pytest.raises(M.ManifestError):
        M.parse(data)


BAD = {
    "config-digest-uppercase": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                "config": {"mediaType": mt.OCI_CONFIG, "digest": dg("c").upper(), "size": 1}},
    "layer-digest-traversal": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG,
                               "layers": [{"mediaType": "x", "digest": "sha256:../../x", "size": 1}]},
    "layer-digest-unknown-algorithm": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG,
                                       "layers": [{"mediaType": "x", "digest": "md5:" + "0" * 32, "size": 1}]},
    "layer-without-digest": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG,
                             "layers": [{"mediaType": "x", "size": 1}]},
    "layer-not-an-object": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG,
                            "layers": [dg("l1")]},
    "layers-not-a-list": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": CONFIG,
                          "layers": {"0": LAYERS[0]}},
    "size-a-string": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                      "config": dict(CONFIG, size="12")},
    "size-a-bool": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": dict(CONFIG, size=True)},
    "image-without-config": {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "layers": LAYERS},
    "child-bad-digest": {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                         "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": "sha256:abc", "size": 1}]},
    "subject-bad-digest": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG,
                           "subject": {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "G" * 64}},
    "subject-not-an-object": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG,
                              "subject": dg("x")},
    "media-type-not-a-string": {"schemaVersion": 2, "mediaType": 2, "config": CONFIG},
    "schema1-bad-blobsum": {"schemaVersion": 1, "fsLayers": [{"blobSum": "sha256:tooshort"}]},
    "schema1-missing-blobsum": {"schemaVersion": 1, "fsLayers": [{}]},
    "schema1-no-fslayers": {"schemaVersion": 1, "name": "a"},
    "artifact-type-not-a-string": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG,
                                   "artifactType": 7},
}


@pytest.mark.parametrize("doc", list(BAD.values()), ids=list(BAD))
def test_bad_documents_raise_manifest_error(doc):
    with pytest.raises(M.ManifestError):
        parse(doc)


def test_manifest_error_is_a_value_error():
    assert issubclass(M.ManifestError, ValueError)
