"""Retention policies (`regprune prune`): which tags of each repository a policy keeps, and why.

`decide()` is the whole policy, a pure function of (tag, time) pairs:

- tags matching any `--keep` regex are kept and do not count toward N;
- the *candidates* are the other tags matching `--only` (default: all); the rest are kept;
- candidates are ranked newest first (ties: the tag name sorting later counts as newer, so `build-10`
  beats `build-09` pushed in the same second); the first N (`--keep-last`) are kept;
- with `--older-than`, a candidate beyond those N is dropped only if it is also older than DURATION.

`evaluate()` applies it to every selected repository of a graph (dating tags by their current link's
mtime or by their image config's `created`) and gives the `Selection` the planner turns into a
`DeletionPlan`; `report()` then adds to the plan's JSON each tag's decision, its reason and the bytes
dropping it frees. Nothing here prints.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Pattern, Sequence, Set, Tuple

from . import render
from .errors import UsageError
from .graph import Graph, RepoGraph
from .model import NO_ID
from .plan import DeletionPlan, Selection
from .refs import parse_duration
from .report import _config_of, iso_time

ORDERS = ("pushed", "created")


# ---------------------------------------------------------------------------------------- the policy
class Policy(NamedTuple):
    keep_last: Optional[int]
    keep: Tuple[Pattern[str], ...]  # sorted by their text: a reason never depends on argument order
    only: Optional[Pattern[str]]
    older_than: Optional[float]  # seconds
    older_than_text: Optional[str]  # as written, for the reasons ("90d")
    order: str

    def to_json(self) -> dict:
        return {
            "keep_last": self.keep_last,
            "keep": [p.pattern for p in self.keep],
            "only": self.only.pattern if self.only is not None else None,
            "older_than": self.older_than_text,
            "order": self.order,
        }

    def describe(self) -> str:
        """The policy as the options that state it (the journal's command line)."""
        parts = []
        if self.keep_last is not None:
            parts += ["--keep-last", str(self.keep_last)]
        for p in self.keep:
            parts += ["--keep", shlex.quote(p.pattern)]
        if self.only is not None:
            parts += ["--only", shlex.quote(self.only.pattern)]
        if self.older_than_text is not None:
            parts += ["--older-than", self.older_than_text]
        if self.order != "pushed":
            parts += ["--order", self.order]
        return " ".join(parts)


def _regex(text: str, option: str) -> Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"{option}: {text!r} is not a regular expression ({exc})") from None


def make_policy(keep_last: Optional[int] = None, keep: Sequence[str] = (), only: Optional[str] = None,
                older_than: Optional[str] = None, order: str = "pushed") -> Policy:
    """A validated policy; bad input is a `UsageError` naming the option and the value."""
    if order not in ORDERS:
        raise UsageError(f"--order: {order!r} is not one of {', '.join(ORDERS)}")
    if keep_last is None and older_than is None:
        raise UsageError("prune: give --keep-last N, --older-than DURATION, or both (a policy without "
                         "either would drop every candidate tag)")
    if keep_last is not None and keep_last < 0:
        raise UsageError(f"--keep-last: {keep_last} is negative")
    seconds = parse_duration(older_than, "--older-than") if older_than is not None else None
    return Policy(
        keep_last=keep_last,
        keep=tuple(_regex(k, "--keep") for k in sorted(set(keep))),
        only=_regex(only, "--only") if only is not None else None,
        older_than=seconds,
        older_than_text=older_than.strip() if older_than is not None else None,
        order=order,
    )


class Dated(NamedTuple):
    tag: str
    time: float  # seconds since the epoch: what the policy ranks and ages by


class Decision(NamedTuple):
    tag: str
    keep: bool
    reason: str  # "keep: matches ^latest$", "keep: 1 of last 3", "drop: older than 90d", ...


def newest_first(tags: Iterable[Dated]) -> List[Dated]:
    """The ranking: newest first; of two tags with the same time, the one whose name sorts later first."""
    return sorted(tags, key=lambda d: (d.time, d.tag), reverse=True)


def decide(tags: Iterable[Dated], policy: Policy, now: float) -> List[Decision]:
    """Every tag's decision and reason, sorted by tag name."""
    out: List[Decision] = []
    candidates: List[Dated] = []
    for dated in tags:
        kept_by = next((p for p in policy.keep if p.search(dated.tag)), None)
        if kept_by is not None:
            out.append(Decision(dated.tag, True, f"keep: matches {kept_by.pattern}"))
        elif policy.only is not None and not policy.only.search(dated.tag):
            out.append(Decision(dated.tag, True, f"keep: does not match --only {policy.only.pattern}"))
        else:
            candidates.append(dated)
    cutoff = now - policy.older_than if policy.older_than is not None else None
    for rank, dated in enumerate(newest_first(candidates), start=1):
        if policy.keep_last is not None and rank <= policy.keep_last:
            out.append(Decision(dated.tag, True, f"keep: {rank} of last {policy.keep_last}"))
        elif cutoff is not None and dated.time >= cutoff:
            out.append(Decision(dated.tag, True, f"keep: newer than {policy.older_than_text}"))
        else:
            why = []
            if policy.keep_last is not None:
                why.append(f"beyond last {policy.keep_last}")
            if cutoff is not None:
                why.append(f"older than {policy.older_than_text}")
            out.append(Decision(dated.tag, False, "drop: " + " and ".join(why)))
    return sorted(out)


# ------------------------------------------------------------------------------------- repositories
def _class_end(pattern: str, start: int) -> int:
    """Where the `[...]` class opening at `start` closes (a `]` right after `[` or `[!` is a member), or -1."""
    first = start + 1
    if pattern[first:first + 1] == "!":
        first += 1
    if pattern[first:first + 1] == "]":
        first += 1
    return pattern.find("]", first)


def _glob(pattern: str) -> Pattern[str]:
    """Shell-style pattern over repository names: `*` and `?` stay within one path component, `**`
    crosses `/` (and `**/` also matches no component at all), `[...]` is a character class."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and _class_end(pattern, i) > 0:
            end = _class_end(pattern, i)
            body = pattern[i + 1:end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^/" + body[1:]  # a negated class never matches the separator either
            elif body.startswith("^"):
                body = "\\" + body
            out.append("[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def match_repositories(names: Iterable[str], patterns: Sequence[str], where: str) -> List[str]:
    """The names matching any pattern (all names when there is none), sorted. A pattern matching no
    repository is an error: a typo must not silently prune nothing (or, worse, something else)."""
    names = sorted(names)
    if not patterns:
        return names
    chosen: Set[str] = set()
    for pattern in patterns:
        try:
            regex = _glob(pattern)
        except re.error as exc:  # a class such as [z-a]
            raise UsageError(f"{pattern}: not a repository pattern ({exc})") from None
        matched = [name for name in names if regex.match(name)]
        if not matched:
            raise UsageError(f"{pattern}: no repository matches this pattern in {where}")
        chosen.update(matched)
    return sorted(chosen)


# ------------------------------------------------------------------------------------------ dating
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z")


def parse_time(text: str) -> Optional[float]:
    """An RFC 3339 time (what image configs' `created` holds, nanoseconds included) in seconds since
    the epoch, or None when it is not one."""
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    except ValueError:
        return None
    return when.timestamp() + float(match.group(7) or 0.0)


class TagDecision(NamedTuple):
    repo: str
    tag: str
    current: int  # blob id, NO_ID when the current link is unusable
    pushed: float  # mtime of the current link
    created: Optional[str]  # the image's `created` (newest child's for an index); only with --order created
    time: float  # what the policy used: created when known and asked for, else pushed
    keep: bool
    reason: str


class Retention(NamedTuple):
    policy: Policy
    repositories: Tuple[str, ...]  # the selected ones, sorted
    decisions: Tuple[TagDecision, ...]  # sorted by (repo, tag)
    untagged: bool

    def selection(self) -> Selection:
        dropped: Dict[str, Set[str]] = {}
        for d in self.decisions:
            if not d.keep:
                dropped.setdefault(d.repo, set()).add(d.tag)
        return Selection(tags=dropped, untagged=set(self.repositories) if self.untagged else frozenset())

    def every_tag_dropped(self) -> List[str]:
        by_repo: Dict[str, List[bool]] = {}
        for d in self.decisions:
            by_repo.setdefault(d.repo, []).append(d.keep)
        return sorted(repo for repo, keeps in by_repo.items() if not any(keeps))


ReadCreated = Callable[[Iterable[int]], Dict[int, str]]


def _created_dates(graph: Graph, repos: Sequence[str], read_created: ReadCreated) -> Dict[Tuple[str, int], str]:
    """(repo, revision) -> the `created` text of its newest image config, for tagged revisions."""
    configs: Dict[Tuple[str, int], List[int]] = {}
    for name in repos:
        rg = graph.repos[name]
        for info in rg.repo.tags.values():
            if info.current != NO_ID and (name, info.current) not in configs:
                configs[(name, info.current)] = _config_of(graph, rg, info.current)
    texts = read_created(c for cs in configs.values() for c in cs)
    out: Dict[Tuple[str, int], str] = {}
    for key, ids in configs.items():
        dated = []
        for c in ids:
            when = parse_time(texts[c]) if c in texts else None
            if when is not None:
                dated.append((when, texts[c]))
        if dated:
            out[key] = max(dated)[1]
    return out


def evaluate(graph: Graph, patterns: Sequence[str], policy: Policy, now: float, untagged: bool = False,
             read_created: Optional[ReadCreated] = None) -> Retention:
    """Apply `policy` to the repositories `patterns` select. `read_created` (config blob ids -> their
    `created` text) is only called with `--order created`."""
    repos = match_repositories(graph.repos, patterns, graph.store.rootdirectory)
    created: Dict[Tuple[str, int], str] = {}
    if policy.order == "created" and read_created is not None:
        created = _created_dates(graph, repos, read_created)
    decisions: List[TagDecision] = []
    for name in repos:
        tags = graph.repos[name].repo.tags
        times: Dict[str, Tuple[Optional[str], float]] = {}
        for tag, info in tags.items():
            text = created.get((name, info.current))
            when = parse_time(text) if text is not None else None
            times[tag] = (text, when if when is not None else info.mtime)
        for d in decide([Dated(t, times[t][1]) for t in tags], policy, now):
            info = tags[d.tag]
            decisions.append(TagDecision(name, d.tag, info.current, info.mtime, times[d.tag][0], times[d.tag][1],
                                         d.keep, d.reason))
    return Retention(policy, tuple(repos), tuple(decisions), untagged)


# ------------------------------------------------------------------------------------------ reporting
def _image_of(graph: Graph, rg: RepoGraph, root: int) -> Set[int]:
    """The revision, its children and its referrers, recursively (what goes with it, if nothing keeps it)."""
    seen: Set[int] = set()
    stack = [root]
    while stack:
        rev = stack.pop()
        if rev in seen or rev not in rg.repo.revisions:
            continue
        seen.add(rev)
        stack.extend(graph.children_in_repo(rg.repo, rev))
        stack.extend(rg.referrers.get(rev, ()))
    return seen


def report(retention: Retention, graph: Graph, plan: DeletionPlan) -> dict:
    """What `prune` adds to the plan's JSON: the policy, each tag's decision with its reason, and the
    repositories whose every tag goes. A dropped tag's `frees` is the bytes of the plan's blobs that
    its image needs (a blob shared by two dropped images counts for each; `bytes_freed` counts it once);
    a tag whose manifest stays (`manifest_stays`: the same manifest as a kept tag, or a child of a kept
    index) frees 0. A tag whose current link is unusable has `digest` null and its manifest "stays"."""
    store = graph.store
    blob_sizes = {store.lookup(b.digest): b.size for b in plan.blobs}
    removed: Dict[str, Set[int]] = {}
    for m in plan.manifests:
        removed.setdefault(m.repo, set()).add(store.lookup(m.digest))
    kept_tags: Dict[Tuple[str, int], List[str]] = {}
    for d in retention.decisions:
        if d.keep and d.current != NO_ID:
            kept_tags.setdefault((d.repo, d.current), []).append(d.tag)
    rows = []
    for d in retention.decisions:
        frees = 0
        gone = removed.get(d.repo, set())
        if not d.keep and d.current in gone:
            rg = graph.repos[d.repo]
            image = _image_of(graph, rg, d.current) & gone
            frees = sum(blob_sizes.get(b, 0) for b in graph.needed_by(rg.repo, image))
        rows.append({
            "repo": d.repo,
            "tag": d.tag,
            "digest": str(store.digest(d.current)) if d.current != NO_ID else None,
            "pushed": iso_time(d.pushed),
            "created": d.created,
            "decision": "keep" if d.keep else "drop",
            "reason": d.reason,
            "frees": frees,
            "same_manifest_as": [] if d.keep else sorted(kept_tags.get((d.repo, d.current), [])),
            "manifest_stays": d.current not in gone,
        })
    return {
        "policy": dict(retention.policy.to_json(), untagged=retention.untagged,
                       selected=list(retention.repositories)),
        "decisions": rows,
        "every_tag_dropped": retention.every_tag_dropped(),
    }


def render_text(retention: Retention, extra: dict) -> Tuple[str, str]:
    """`report()`'s decisions as text, per repository and newest first (shown before the plan), and the
    warning about repositories losing every tag (shown after the plan's summary)."""
    order = retention.policy.order
    rank = {(d.repo, d.tag): (d.time, d.tag) for d in retention.decisions}
    rows = []
    previous = None
    newest_first = sorted(extra["decisions"], key=lambda r: rank[(r["repo"], r["tag"])], reverse=True)
    for row in sorted(newest_first, key=lambda r: r["repo"]):  # stable: newest first within a repository
        if order == "created" and row["created"]:
            date = row["created"]
        else:
            date = (row["pushed"] or "-") + (" (pushed)" if order == "created" else "")
        note = ""
        if row["decision"] == "drop" and row["same_manifest_as"]:
            note = f" (same manifest as kept {', '.join(row['same_manifest_as'])}: frees nothing)"
        elif row["decision"] == "drop" and row["manifest_stays"]:
            note = " (its manifest stays, a kept tag reaches it: frees nothing)"
        rows.append([row["repo"] if row["repo"] != previous else "", row["tag"], date,
                     render.size(row["frees"]) if row["decision"] == "drop" else "", row["reason"] + note])
        previous = row["repo"]
    lines = ["POLICY: " + (retention.policy.describe() or "(none)")
             + (" --untagged" if retention.untagged else "")]
    if rows:
        lines += render.table(["REPOSITORY", "TAG", order.upper(), "FREES", "DECISION"], rows,
                              [False, False, False, True, False])
    else:
        lines.append("(no tags in the selected repositories)")
    after = "".join(f"\nWARNING: the policy drops every tag of {repo}" for repo in extra["every_tag_dropped"])
    return "\n".join(lines) + "\n\n", after
