"""Parsing what the user names on the command line (`repo`, `repo:tag`, `repo:pattern*`,
`repo@sha256:<hex>`, durations) into validated values. A name that matches nothing is an error, never
an empty selection: a mistyped tag must not widen or silently skip a deletion."""

from __future__ import annotations

import fnmatch
import re
from typing import Dict, List, NamedTuple, Optional, Set

from . import layout
from .digest import Digest, InvalidDigest
from .errors import UsageError
from .graph import Graph
from .plan import Selection

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, option: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"{option}: {text!r} is not a duration (a number and one of s, m, h, d, w: 90m, 168h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Ref(NamedTuple):
    repo: str
    tag: Optional[str] = None  # may hold * and ? wildcards
    digest: Optional[Digest] = None


def parse_ref(text: str) -> Ref:
    if "@" in text:
        repo, _, digest_text = text.partition("@")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise UsageError(f"{text}: {exc}") from None
        if digest.algorithm != "sha256":
            raise UsageError(f"{text}: manifests are addressed by sha256 digests")
        ref = Ref(repo, digest=digest)
    else:
        slash, colon = text.rfind("/"), text.rfind(":")
        if colon > slash:
            ref = Ref(text[:colon], tag=text[colon + 1:])
        else:
            ref = Ref(text)
    if not layout.valid_repository_name(ref.repo):
        raise UsageError(f"{text}: {ref.repo!r} is not a valid repository name")
    if ref.tag is not None and not ref.tag:
        raise UsageError(f"{text}: empty tag")
    if ref.tag is not None and not any(c in ref.tag for c in "*?[") and not layout.valid_tag(ref.tag):
        raise UsageError(f"{text}: {ref.tag!r} is not a valid tag")
    return ref


def select(graph: Graph, texts: List[str]) -> Selection:
    """The selection for `regprune delete REF...`; every REF must name something that exists."""
    if not texts:
        raise UsageError("name at least one REF (repo, repo:tag or repo@sha256:<hex>)")
    tags: Dict[str, Set[str]] = {}
    revisions: Dict[str, Set[int]] = {}
    repositories: Set[str] = set()
    root = graph.store.rootdirectory
    for text in texts:
        ref = parse_ref(text)
        rg = graph.repos.get(ref.repo)
        if rg is None:
            raise UsageError(f"{text}: no repository {ref.repo!r} in {root}")
        if ref.digest is not None:
            blob_id = graph.store.lookup(ref.digest)
            if blob_id not in rg.repo.revisions:
                raise UsageError(f"{text}: no manifest {ref.digest} in repository {ref.repo!r}")
            revisions.setdefault(ref.repo, set()).add(blob_id)
        elif ref.tag is not None:
            matched = sorted(t for t in rg.repo.tags if fnmatch.fnmatchcase(t, ref.tag))
            if not matched:
                raise UsageError(f"{text}: no tag matching {ref.tag!r} in repository {ref.repo!r}")
            tags.setdefault(ref.repo, set()).update(matched)
        else:
            repositories.add(ref.repo)
    return Selection(tags=tags, revisions=revisions, repositories=repositories)


def select_repositories(graph: Graph, names: List[str]) -> Set[str]:
    missing = sorted(set(names) - set(graph.repos))
    if missing:
        raise UsageError(f"{missing[0]}: no such repository in {graph.store.rootdirectory}")
    return set(names) if names else set(graph.repos)
