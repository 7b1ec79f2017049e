"""`regprune.digest`: a digest can only be built valid, round-trips as text and as raw bytes, and is an
immutable, hashable, ordered value."""

from __future__ import annotations

import copy
import hashlib
import pickle

import pytest

from regprune.digest import EMPTY_SHA256, HEX_LENGTHS, Digest, InvalidDigest

HEX64 = hashlib.sha256(b"regprune").hexdigest()
HEX128 = hashlib.sha512(b"regprune").hexdigest()
HEX96 = hashlib.sha384(b"regprune").hexdigest()

VALID = [
    f"sha256:{HEX64}",
    f"sha384:{HEX96}",
    f"sha512:{HEX128}",
    "sha256:" + "0" * 64,
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
]

INVALID = [
    pytest.param(f"sha256:{HEX64.upper()}", id="uppercase-hex"),
    pytest.param(f"sha256:{HEX64[:-1]}A", id="one-uppercase-digit"),
    pytest.param(f"SHA256:{HEX64}", id="uppercase-algorithm"),
    pytest.param(f"sha256:{HEX64[:-1]}", id="63-digits"),
    pytest.param(f"sha256:{HEX64}0", id="65-digits"),
    pytest.param(f"sha512:{HEX64}", id="sha512-with-64-digits"),
    pytest.param(f"sha256:{HEX128}", id="sha256-with-128-digits"),
    pytest.param(f"md5:{HEX64[:32]}", id="unknown-algorithm"),
    pytest.param(f"sha1:{HEX64[:40]}", id="sha1"),
    pytest.param(f"blake3:{HEX64}", id="blake3"),
    pytest.param("sha256:../../x", id="path-traversal"),
    pytest.param("sha256:../../" + "a" * 58, id="path-traversal-right-length"),
    pytest.param(f"sha256:{HEX64}\n", id="trailing-newline"),
    pytest.param(f"sha256:{HEX64[:63]}\n", id="newline-as-64th-char"),
    pytest.param(f" sha256:{HEX64}", id="leading-space"),
    pytest.param(f"sha256: {HEX64[1:]}", id="space-in-hex"),
    pytest.param(HEX64, id="no-algorithm"),
    pytest.param(f":{HEX64}", id="empty-algorithm"),
    pytest.param("sha256:", id="empty-hex"),
    pytest.param("", id="empty"),
    pytest.param(f"sha256:{HEX64[:-1]}g", id="non-hex-letter"),
    pytest.param(f"sha256:{HEX64[:-1]}\u0661", id="non-ascii-digit"),
    pytest.param(f"sha256:{HEX64}:{HEX64}", id="two-colons"),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_digests_parse_and_round_trip(text):
    d = Digest.parse(text)
    assert str(d) == text
    assert Digest.parse(str(d)) == d
    algorithm, hex_ = text.split(":")
    assert (d.algorithm, d.hex) == (algorithm, hex_)
    assert len(d.hex) == HEX_LENGTHS[d.algorithm]
    assert repr(d) == f"Digest({text!r})"


@pytest.mark.parametrize("text", INVALID)
def test_invalid_digests_are_refused(text):
    with pytest.raises(InvalidDigest):
        Digest.parse(text)
    assert Digest.try_parse(text) is None


def test_invalid_digest_is_a_value_error():
    assert issubclass(InvalidDigest, ValueError)


@pytest.mark.parametrize("value", [None, 42, b"sha256:" + HEX64.encode(), [f"sha256:{HEX64}"]])
def test_try_parse_refuses_non_strings(value):
    assert Digest.try_parse(value) is None


def test_constructor_validates_like_parse():
    assert Digest("sha256", HEX64) == Digest.parse(f"sha256:{HEX64}")
    with pytest.raises(InvalidDigest):
        Digest("sha256", HEX64.upper())
    with pytest.raises(InvalidDigest):
        Digest("md5", HEX64[:32])
    with pytest.raises(InvalidDigest):
        Digest("sha256", "../" + HEX64[3:])


def test_of_hashes_with_sha256():
    assert Digest.of(b"") == EMPTY_SHA256
    assert str(EMPTY_SHA256) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert Digest.of(b"regprune") == Digest("sha256", HEX64)


def test_raw_round_trip():
    d = Digest("sha256", HEX64)
    assert d.raw == hashlib.sha256(b"regprune").digest()
    assert len(d.raw) == 32
    assert Digest.from_raw(d.raw) == d
    assert Digest.from_raw(bytes(32)) == Digest("sha256", "0" * 64)


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_from_raw_refuses_wrong_length(n):
    with pytest.raises(InvalidDigest):
        Digest.from_raw(bytes(n))


def test_short():
    assert Digest("sha256", HEX64).short == HEX64[:12]


def test_immutable():
    d = Digest("sha256", HEX64)
    with pytest.raises(AttributeError):
        d.hex = "0" * 64
    with pytest.raises(AttributeError):
        d.algorithm = "sha512"
    with pytest.raises(AttributeError):
        d.other = 1
    assert str(d) == f"sha256:{HEX64}"


def test_attributes_cannot_be_deleted():
    d = Digest("sha256", HEX64)
    with pytest.raises(AttributeError):
        del d.hex
    assert d.hex == HEX64


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda d: pickle.loads(pickle.dumps(d))],
                         ids=["copy", "deepcopy", "pickle"])
def test_copy_and_pickle(clone):
    d = Digest("sha256", HEX64)
    assert clone(d) == d
    assert clone({"plan": [d]}) == {"plan": [d]}


def test_equality_and_hash():
    a = Digest.parse(f"sha256:{HEX64}")
    b = Digest("sha256", HEX64)
    assert a == b and not (a != b)
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1
    assert a != Digest.of(b"other")
    assert a != f"sha256:{HEX64}"  # a digest is not its text
    assert a != Digest("sha512", HEX128)


def test_same_hex_different_algorithm_differs():
    # the hex length makes it impossible to share a hex between algorithms; different hexes differ
    assert Digest("sha384", HEX96) != Digest("sha512", HEX128)


def test_ordering_is_by_algorithm_then_hex():
    ds = [Digest("sha512", HEX128), Digest("sha256", "f" * 64), Digest("sha256", "0" * 64),
          Digest("sha384", HEX96), Digest("sha256", HEX64)]
    ordered = sorted(ds)
    assert [str(d) for d in ordered] == sorted(str(d) for d in ds)
    assert ordered[0] == Digest("sha256", "0" * 64)
    assert ordered[-1] == Digest("sha512", HEX128)
    assert Digest("sha256", "0" * 64) < Digest("sha256", "1" * 64)
    assert Digest("sha256", "1" * 64) > Digest("sha256", "0" * 64)
    assert not Digest("sha256", HEX64) < Digest("sha256", HEX64)


def test_ordering_against_other_types_is_a_type_error():
    with pytest.raises(TypeError):
        _ = Digest("sha256", HEX64) < f"sha256:{HEX64}"
