"""Content digests, validated at the edge.

A `Digest` can only be built from text that names a known algorithm followed by lower-case hex of the
right length. Everything downstream (paths, the graph, reports) takes `Digest` values, never raw
strings, so no path is ever made from an unvalidated name.
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional

#: Hex length of each algorithm the registry writes links for. Blobs are only ever stored under sha256;
#: sha384/sha512 appear as alias links in a repository's `_layers`.
HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_SHA256_TEXT = re.compile("sha256:[0-9a-f]{64}").fullmatch
_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}").fullmatch for n in (2, 64, 96, 128)}


class InvalidDigest(ValueError):
    """Text that is not a digest regprune accepts."""


def is_hex(text: str, length: int) -> bool:
    """Exactly `length` lower-case hex digits (a compiled match: this runs once per file scanned)."""
    match = _HEX.get(length)
    if match is None:
        return len(text) == length and all(c in "0123456789abcdef" for c in text)
    return match(text) is not None


class Digest:
    """An algorithm and its lower-case hex value, e.g. `sha256:e3b0...`."""

    __slots__ = ("algorithm", "hex")

    algorithm: str
    hex: str

    def __init__(self, algorithm: str, hex: str) -> None:  # noqa: A002 - the OCI spec's own word
        length = HEX_LENGTHS.get(algorithm)
        if length is None:
            raise InvalidDigest(f"unknown digest algorithm {algorithm!r}")
        if not is_hex(hex, length):
            raise InvalidDigest(f"not {length} lower-case hex digits: {hex!r}")
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "hex", hex)

    @classmethod
    def parse(cls, text: str) -> Digest:
        if _SHA256_TEXT(text) is not None:  # the common case, validated by one compiled match
            digest = object.__new__(cls)
            object.__setattr__(digest, "algorithm", "sha256")
            object.__setattr__(digest, "hex", text[7:])
            return digest
        algorithm, sep, hex_ = text.partition(":")
        if not sep:
            raise InvalidDigest(f"not a digest: {text!r}")
        return cls(algorithm, hex_)

    @classmethod
    def try_parse(cls, text: object) -> Optional[Digest]:
        if not isinstance(text, str):
            return None
        try:
            return cls.parse(text)
        except InvalidDigest:
            return None

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The sha256 digest of `data`, as the registry stores it."""
        return cls("sha256", hashlib.sha256(data).hexdigest())

    @classmethod
    def from_raw(cls, raw: bytes) -> Digest:
        """Rebuild a sha256 digest from its 32 raw bytes (the graph's compact form)."""
        if len(raw) != 32:
            raise InvalidDigest(f"a sha256 digest has 32 bytes, not {len(raw)}")
        return cls("sha256", raw.hex())

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Digest is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Digest is immutable")

    def __reduce__(self) -> tuple:
        return (Digest, (self.algorithm, self.hex))

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Digest) and self.hex == other.hex and self.algorithm == other.algorithm
        )

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Digest):
            return NotImplemented
        return (self.algorithm, self.hex) < (other.algorithm, other.hex)

    def __hash__(self) -> int:
        return hash((self.algorithm, self.hex))


EMPTY_SHA256 = Digest("sha256", hashlib.sha256(b"").hexdigest())
