"""Retention policies: the decision function over many tag lists (every reason asserted exactly), the
repository patterns, dating by push and by config `created`, and what `prune` adds to a plan."""

from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Tuple

import pytest
from synth import Reg

from regprune import cli
from regprune.configs import read_created
from regprune.errors import UsageError
from regprune.plan import make_plan
from regprune.retention import (
    Dated,
    Decision,
    decide,
    evaluate,
    make_policy,
    match_repositories,
    parse_time,
    report,
)
from regprune.store_access import open_store

DAY = 86400.0
NOW = float(int(time.time()))  # the CLI ages tags against the clock


def run(tags: Dict[str, float], **policy) -> List[Tuple[str, str]]:
    """(tag, reason) for tags given as tag -> age in days."""
    decisions = decide([Dated(t, NOW - age * DAY) for t, age in tags.items()], make_policy(**policy), NOW)
    assert [d.tag for d in decisions] == sorted(tags)
    assert all(d.keep == d.reason.startswith("keep: ") for d in decisions)
    return [(d.tag, d.reason) for d in decisions]


BUILDS = {"b1": 50, "b2": 40, "b3": 30, "b4": 20, "b5": 10, "latest": 10}


# ----------------------------------------------------------------------------------------- decide()
def test_keep_last_keeps_the_most_recent_and_counts_keep_regex_out():
    assert run(BUILDS, keep_last=2, keep=["^latest$"]) == [
        ("b1", "drop: beyond last 2"),
        ("b2", "drop: beyond last 2"),
        ("b3", "drop: beyond last 2"),
        ("b4", "keep: 2 of last 2"),
        ("b5", "keep: 1 of last 2"),
        ("latest", "keep: matches ^latest$"),
    ]


def test_without_keep_regex_latest_is_a_candidate_like_any_other():
    assert run(BUILDS, keep_last=2) == [
        ("b1", "drop: beyond last 2"),
        ("b2", "drop: beyond last 2"),
        ("b3", "drop: beyond last 2"),
        ("b4", "drop: beyond last 2"),
        ("b5", "keep: 2 of last 2"),  # same time as latest: `latest` sorts later, so it counts as newer
        ("latest", "keep: 1 of last 2"),
    ]


def test_older_than_alone():
    assert run(BUILDS, older_than="25d") == [
        ("b1", "drop: older than 25d"),
        ("b2", "drop: older than 25d"),
        ("b3", "drop: older than 25d"),
        ("b4", "keep: newer than 25d"),
        ("b5", "keep: newer than 25d"),
        ("latest", "keep: newer than 25d"),
    ]


def test_keep_last_with_older_than_drops_only_what_is_both_beyond_and_old():
    assert run(BUILDS, keep_last=1, older_than="35d", keep=["^latest$"]) == [
        ("b1", "drop: beyond last 1 and older than 35d"),
        ("b2", "drop: beyond last 1 and older than 35d"),
        ("b3", "keep: newer than 35d"),
        ("b4", "keep: newer than 35d"),
        ("b5", "keep: 1 of last 1"),
        ("latest", "keep: matches ^latest$"),
    ]


def test_older_than_never_drops_within_the_last_n():
    assert run({"a": 100, "b": 90, "c": 80}, keep_last=3, older_than="1d") == [
        ("a", "keep: 3 of last 3"), ("b", "keep: 2 of last 3"), ("c", "keep: 1 of last 3")]


def test_older_than_boundary_is_strict():
    decisions = decide([Dated("edge", NOW - 90 * DAY), Dated("older", NOW - 90 * DAY - 1)],
                       make_policy(older_than="90d"), NOW)
    assert decisions == [Decision("edge", True, "keep: newer than 90d"),
                         Decision("older", False, "drop: older than 90d")]


def test_keep_last_zero_drops_every_candidate():
    assert run({"a": 1, "stable": 2}, keep_last=0, keep=["^stable$"]) == [
        ("a", "drop: beyond last 0"), ("stable", "keep: matches ^stable$")]


def test_keep_last_larger_than_the_tag_count_keeps_all():
    assert run({"a": 3, "b": 2}, keep_last=10) == [("a", "keep: 2 of last 10"), ("b", "keep: 1 of last 10")]


def test_only_limits_the_candidates_and_the_count():
    tags = {"pr-1": 5, "pr-2": 4, "pr-3": 3, "v1.0": 50, "v1.1": 40, "main": 60}
    assert run(tags, keep_last=1, only=r"^pr-") == [
        ("main", "keep: does not match --only ^pr-"),
        ("pr-1", "drop: beyond last 1"),
        ("pr-2", "drop: beyond last 1"),
        ("pr-3", "keep: 1 of last 1"),
        ("v1.0", "keep: does not match --only ^pr-"),
        ("v1.1", "keep: does not match --only ^pr-"),
    ]


def test_keep_wins_over_only_and_the_first_sorted_regex_gives_the_reason():
    tags = {"release-1": 100, "release-2": 90, "pr-9": 80, "pr-10": 1}
    # re.search, not a full match; several --keep regexes, the reason names the first in sorted order
    assert run(tags, keep_last=1, keep=["release", "^release-2$"], only="^(pr|release)-") == [
        ("pr-10", "keep: 1 of last 1"),
        ("pr-9", "drop: beyond last 1"),
        ("release-1", "keep: matches release"),
        ("release-2", "keep: matches ^release-2$"),
    ]
    assert run(tags, keep_last=1, keep=["^release-2$", "release"]) == run(
        tags, keep_last=1, keep=["release", "^release-2$"])  # argument order does not change reasons


@pytest.mark.parametrize("names, kept", [
    (["build-09", "build-10", "build-08"], ["build-10"]),  # same second: the later name is the newer
    (["b", "a", "c"], ["c"]),
    (["v1", "v1.0", "v1.0.0"], ["v1.0.0"]),
])
def test_ties_are_broken_by_tag_name(names, kept):
    for order in (names, list(reversed(names))):
        decisions = decide([Dated(t, NOW - DAY) for t in order], make_policy(keep_last=1), NOW)
        assert [d.tag for d in decisions if d.keep] == kept
        assert [d.reason for d in decisions if d.keep] == ["keep: 1 of last 1"]


def test_ties_in_time_rank_by_name_for_reasons():
    decisions = decide([Dated(t, NOW) for t in ("a", "b", "c")], make_policy(keep_last=2), NOW)
    assert decisions == [Decision("a", False, "drop: beyond last 2"), Decision("b", True, "keep: 2 of last 2"),
                         Decision("c", True, "keep: 1 of last 2")]


def test_empty_tag_list():
    assert decide([], make_policy(keep_last=3), NOW) == []


def test_every_tag_kept_by_regex():
    assert run({"latest": 100, "stable": 200}, keep_last=0, keep=["^(latest|stable)$"]) == [
        ("latest", "keep: matches ^(latest|stable)$"), ("stable", "keep: matches ^(latest|stable)$")]


# ------------------------------------------------------------------------------------------ policies
@pytest.mark.parametrize("kwargs, message", [
    ({"keep_last": 1, "keep": ["("]},
     "--keep: '(' is not a regular expression (missing ), unterminated subpattern at position 0)"),
    ({"keep_last": 1, "only": "[a"}, "--only: '[a' is not a regular expression (unterminated character set at "
                                     "position 0)"),
    ({"older_than": "90 days"}, "--older-than: '90 days' is not a duration (a number and one of s, m, h, d, w: "
                                "90m, 168h, 7d)"),
    ({"keep_last": 1, "order": "name"}, "--order: 'name' is not one of pushed, created"),
    ({}, "prune: give --keep-last N, --older-than DURATION, or both (a policy without either would drop every "
         "candidate tag)"),
    ({"keep": ["^latest$"]}, "prune: give --keep-last N, --older-than DURATION, or both (a policy without either "
                             "would drop every candidate tag)"),
    ({"keep_last": -1}, "--keep-last: -1 is negative"),
])
def test_bad_policies_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError) as info:
        make_policy(**kwargs)
    assert str(info.value) == message
    assert info.value.exit_code == 2


def test_policy_json_and_description():
    policy = make_policy(keep_last=3, keep=["^v", "^latest$", "^v"], only="x y", older_than="90d", order="created")
    assert policy.to_json() == {"keep_last": 3, "keep": ["^latest$", "^v"], "only": "x y", "older_than": "90d",
                                "order": "created"}
    assert policy.describe() == "--keep-last 3 --keep '^latest$' --keep '^v' --only 'x y' --older-than 90d " \
                                "--order created"


# -------------------------------------------------------------------------------------- repositories
NAMES = ["app", "team/api", "team/web", "team/web/admin", "tools/ci", "tools/ci/runner", "x/team/y"]


@pytest.mark.parametrize("patterns, expected", [
    ([], NAMES),
    (["team/*"], ["team/api", "team/web"]),
    (["team/**"], ["team/api", "team/web", "team/web/admin"]),
    (["**"], NAMES),
    (["*"], ["app"]),
    (["**/runner"], ["tools/ci/runner"]),
    (["**/ci"], ["tools/ci"]),
    (["**/app"], ["app"]),  # `**/` also matches no component
    (["team/???"], ["team/api", "team/web"]),
    (["team/[a-v]*"], ["team/api"]),
    (["team/[!a]*"], ["team/web"]),
    (["tools/ci"], ["tools/ci"]),  # a plain name is itself
    (["app", "tools/*", "app"], ["app", "tools/ci"]),
    (["*/*/*"], ["team/web/admin", "tools/ci/runner", "x/team/y"]),
])
def test_repository_patterns(patterns, expected):
    assert match_repositories(NAMES, patterns, "/store") == expected


@pytest.mark.parametrize("pattern", ["team", "team/", "teams/*", "*/api/*", "[", "app?"])
def test_a_pattern_matching_nothing_is_an_error(pattern):
    with pytest.raises(UsageError) as info:
        match_repositories(NAMES, ["app", pattern], "/store")
    assert str(info.value) == f"{pattern}: no repository matches this pattern in /store"


def test_a_malformed_pattern_is_an_error():
    with pytest.raises(UsageError) as info:
        match_repositories(NAMES, ["team/[z-a]"], "/store")
    assert str(info.value) == "team/[z-a]: not a repository pattern (bad character range z-a at position 6)"


@pytest.mark.parametrize("text, expected", [
    ("2024-01-01T00:00:00Z", 1704067200.0),
    ("2024-01-01T01:00:00+01:00", 1704067200.0),
    ("2023-12-31T19:00:00-05:00", 1704067200.0),
    ("2024-01-01T00:00:00.5Z", 1704067200.5),
    ("2024-01-01T00:00:00.123456789Z", 1704067200.123456789),
    ("1970-01-01T00:00:00Z", 0.0),
    ("2024-13-01T00:00:00Z", None),
    ("2024-01-01", None),
    ("yesterday", None),
])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


# ----------------------------------------------------------------------------- on a registry tree
def set_pushed(reg: Reg, repo: str, tag: str, when: float) -> None:
    os.utime(reg.tag_path(repo, tag) / "current" / "link", (when, when))


def age_all(reg: Reg) -> None:
    from fixtures.tree import set_tree_mtime

    set_tree_mtime(reg.root, NOW - 365 * DAY)


def build(tmp_path) -> Reg:
    """app: v1..v4 pushed a day apart (v4 newest) plus latest = v4; web: a multi-arch index `stable`
    whose amd64 child is also tagged `amd64`; old: one tag."""
    reg = Reg(tmp_path / "store")
    for i in range(1, 5):
        reg.image("app", f"v{i}", layers=[b"base", f"app {i}".encode()],
                  created=f"2024-0{5 - i}-01T00:00:00Z")  # created runs the other way round
    reg.tag("app", "latest", reg.tags["app"]["v4"])
    amd = reg.image("web", "amd64", layers=[b"base", b"web amd64"], created="2024-06-01T00:00:00Z")
    arm = reg.image("web", layers=[b"base", b"web arm64"], created="2024-07-01T00:00:00Z")
    reg.index("web", "stable", children=[amd, arm])
    reg.image("old", "1.0", layers=[b"old"])
    age_all(reg)
    for i in range(1, 5):
        set_pushed(reg, "app", f"v{i}", NOW - (10 - i) * DAY)
    set_pushed(reg, "app", "latest", NOW - 6 * DAY)
    set_pushed(reg, "web", "amd64", NOW - 3 * DAY)
    set_pushed(reg, "web", "stable", NOW - 2 * DAY)
    return reg


def reasons(retention) -> Dict[Tuple[str, str], str]:
    return {(d.repo, d.tag): d.reason for d in retention.decisions}


def test_evaluate_by_push_time(tmp_path):
    reg = build(tmp_path)
    opened = open_store(str(reg.root))
    result = evaluate(opened.graph, ["app", "web"], make_policy(keep_last=2), NOW)
    assert result.repositories == ("app", "web")
    assert reasons(result) == {
        ("app", "latest"): "keep: 2 of last 2",  # pushed 6 days ago, between v3 and v4
        ("app", "v1"): "drop: beyond last 2",
        ("app", "v2"): "drop: beyond last 2",
        ("app", "v3"): "drop: beyond last 2",
        ("app", "v4"): "keep: 1 of last 2",
        ("web", "amd64"): "keep: 2 of last 2",
        ("web", "stable"): "keep: 1 of last 2",
    }
    assert [d.time for d in result.decisions if d.repo == "app" and d.tag == "v4"] == [NOW - 6 * DAY]
    assert result.selection().tags == {"app": {"v1", "v2", "v3"}}
    assert not result.selection().untagged and result.every_tag_dropped() == []


def test_evaluate_by_created_uses_the_newest_child_of_an_index(tmp_path):
    reg = build(tmp_path)
    opened = open_store(str(reg.root))
    calls = []

    def reader(ids):
        ids = list(ids)
        calls.append(ids)
        return read_created(opened.storage, opened.graph.store, ids, 4)

    result = evaluate(opened.graph, [], make_policy(keep_last=1, order="created"), NOW, read_created=reader)
    assert len(calls) == 1
    assert reasons(result) == {
        ("app", "latest"): "drop: beyond last 1",  # the same image as v4 (created 2024-01-01)
        ("app", "v1"): "keep: 1 of last 1",  # created 2024-04-01: the newest by created
        ("app", "v2"): "drop: beyond last 1",
        ("app", "v3"): "drop: beyond last 1",
        ("app", "v4"): "drop: beyond last 1",
        ("old", "1.0"): "keep: 1 of last 1",
        ("web", "amd64"): "drop: beyond last 1",  # created 2024-06-01
        ("web", "stable"): "keep: 1 of last 1",  # its arm64 child: 2024-07-01
    }
    created = {(d.repo, d.tag): d.created for d in result.decisions}
    assert created[("web", "stable")] == "2024-07-01T00:00:00Z"
    assert created[("old", "1.0")] is None  # no `created`: dated by push
    assert [d.time for d in result.decisions if d.tag == "1.0"] == [NOW - 365 * DAY]
    assert result.every_tag_dropped() == []


def test_evaluate_by_push_reads_no_config(tmp_path):
    reg = build(tmp_path)
    graph = open_store(str(reg.root)).graph

    def reader(ids):
        raise AssertionError("configs read although --order pushed")

    result = evaluate(graph, ["old"], make_policy(older_than="30d"), NOW, untagged=True, read_created=reader)
    assert reasons(result) == {("old", "1.0"): "drop: older than 30d"}
    assert result.every_tag_dropped() == ["old"]
    selection = result.selection()
    assert selection.tags == {"old": {"1.0"}} and selection.untagged == {"old"}


def test_unknown_pattern_is_a_usage_error(tmp_path):
    reg = build(tmp_path)
    graph = open_store(str(reg.root)).graph
    with pytest.raises(UsageError) as info:
        evaluate(graph, ["app", "nope/*"], make_policy(keep_last=1), NOW)
    assert str(info.value) == f"nope/*: no repository matches this pattern in {graph.store.rootdirectory}"


def plan_and_report(reg: Reg, patterns, **policy) -> Tuple[dict, dict]:
    graph = open_store(str(reg.root)).graph
    untagged = policy.pop("untagged", False)
    result = evaluate(graph, patterns, make_policy(**policy), NOW, untagged=untagged)
    plan = make_plan(graph, result.selection(), "prune", grace_seconds=0, now=NOW)
    extra = report(result, graph, plan)
    by_tag = {(r["repo"], r["tag"]): r for r in extra["decisions"]}
    return plan.to_json(dry_run=True), dict(extra, by_tag=by_tag)


def test_report_frees_and_same_manifest(tmp_path):
    reg = build(tmp_path)
    plan, extra = plan_and_report(reg, ["app"], keep_last=1)
    by_tag = extra["by_tag"]
    # v4 is newest; latest (same image, pushed earlier) is dropped and frees nothing
    assert by_tag[("app", "latest")]["reason"] == "drop: beyond last 1"
    assert by_tag[("app", "latest")]["same_manifest_as"] == ["v4"]
    assert by_tag[("app", "latest")]["frees"] == 0 and by_tag[("app", "latest")]["manifest_stays"] is True
    for i in (1, 2, 3):
        row = by_tag[("app", f"v{i}")]
        digest = reg.tags["app"][f"v{i}"]
        blobs, _, _ = reg.references(digest)
        own = [digest] + [d for d in blobs if reg.content[d] != b"base"]  # its config and own layer
        assert row["frees"] == reg.size(*own) and row["manifest_stays"] is False
        assert row["digest"] == digest and row["same_manifest_as"] == []
    assert plan["bytes_freed"] == sum(by_tag[("app", f"v{i}")]["frees"] for i in (1, 2, 3))
    assert {(t["repo"], t["tag"]) for t in plan["tags"]} == {("app", t) for t in ("latest", "v1", "v2", "v3")}
    assert [(r["repo"], r["tag"]) for r in extra["decisions"]] == sorted(by_tag)
    assert extra["policy"] == {"keep_last": 1, "keep": [], "only": None, "older_than": None, "order": "pushed",
                               "untagged": False, "selected": ["app"]}
    assert extra["every_tag_dropped"] == []


def test_report_tag_on_a_child_of_a_kept_index_frees_nothing(tmp_path):
    reg = build(tmp_path)
    plan, extra = plan_and_report(reg, ["web"], keep_last=1)
    row = extra["by_tag"][("web", "amd64")]
    assert row["reason"] == "drop: beyond last 1" and row["same_manifest_as"] == []
    assert row["frees"] == 0 and row["manifest_stays"] is True
    assert plan["manifests"] == [] and plan["blobs"] == []


def test_report_every_tag_dropped(tmp_path):
    reg = build(tmp_path)
    plan, extra = plan_and_report(reg, ["web", "old"], keep_last=0, keep=["^stable$"])
    assert extra["every_tag_dropped"] == ["old"]
    assert extra["by_tag"][("web", "stable")]["reason"] == "keep: matches ^stable$"


def test_shared_blob_of_two_dropped_images_counts_for_each(tmp_path):
    reg = Reg(tmp_path / "store")
    reg.image("app", "a", layers=[b"shared only by a and b", b"a"])
    reg.image("app", "b", layers=[b"shared only by a and b", b"b"])
    reg.image("app", "c", layers=[b"c"])
    age_all(reg)
    set_pushed(reg, "app", "c", NOW)
    plan, extra = plan_and_report(reg, [], keep_last=1)
    a, b = extra["by_tag"][("app", "a")]["frees"], extra["by_tag"][("app", "b")]["frees"]
    shared = len(b"shared only by a and b")
    assert a + b == plan["bytes_freed"] + shared


# ------------------------------------------------------------------------------------------ the CLI
def cli_run(capsys, *argv: str) -> Tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_dry_run_json_and_text(tmp_path, capsys):
    reg = build(tmp_path)
    root = str(reg.root)
    code, out, err = cli_run(capsys, "prune", "app", "web", "--keep-last", "1", "--keep", "^latest$", "--root", root,
                             "--dry-run", "--json", "--grace", "0s")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["command"] == "prune app web --keep-last 1 --keep '^latest$'"
    assert doc["dry_run"] is True
    assert [(r["repo"], r["tag"], r["decision"]) for r in doc["decisions"]] == [
        ("app", "latest", "keep"), ("app", "v1", "drop"), ("app", "v2", "drop"), ("app", "v3", "drop"),
        ("app", "v4", "keep"), ("web", "amd64", "drop"), ("web", "stable", "keep")]
    assert {(t["repo"], t["tag"]) for t in doc["tags"]} == {("app", "v1"), ("app", "v2"), ("app", "v3"),
                                                            ("web", "amd64")}

    code, text, err = cli_run(capsys, "prune", "app", "web", "--keep-last", "1", "--keep", "^latest$", "--root",
                              root, "--dry-run", "--grace", "0s")
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0] == "POLICY: --keep-last 1 --keep '^latest$'"
    assert lines[1].split() == ["REPOSITORY", "TAG", "PUSHED", "FREES", "DECISION"]

    def tag_of(line: str) -> str:
        return line.split()[0] if line.startswith(" ") else line.split()[1]


    assert [tag_of(line) for line in lines[2:7]] == ["v4", "latest", "v3", "v2", "v1"]  # newest first
    assert "amd64" in lines[8] and "(its manifest stays, a kept tag reaches it: frees nothing)" in lines[8]
    assert "DRY RUN: prune app web --keep-last 1 --keep '^latest$'" in lines


def test_cli_warns_when_every_tag_goes(tmp_path, capsys):
    reg = build(tmp_path)
    code, text, err = cli_run(capsys, "prune", "o*", "--older-than", "30d", "--root", str(reg.root), "--dry-run",
                              "--grace", "0s")
    assert code == 0, err
    assert text.rstrip().splitlines()[-1] == "WARNING: the policy drops every tag of old"


@pytest.mark.parametrize("argv, message", [
    (["nope/**", "--keep-last", "1"], "Error: nope/**: no repository matches this pattern in {root}\n"),
    (["--keep-last", "1", "--keep", "*"],
     "Error: --keep: '*' is not a regular expression (nothing to repeat at position 0)\n"),
    (["--keep", "^latest$"], "Error: prune: give --keep-last N, --older-than DURATION, or both (a policy without "
                             "either would drop every candidate tag)\n"),
])
def test_cli_usage_errors(tmp_path, capsys, argv, message):
    reg = build(tmp_path)
    code, out, err = cli_run(capsys, "prune", *argv, "--root", str(reg.root), "--dry-run")
    assert code == 2 and out == ""
    assert err == message.format(root=os.path.abspath(reg.root))


def test_cli_created_falls_back_to_pushed_in_text(tmp_path, capsys):
    reg = build(tmp_path)
    code, text, err = cli_run(capsys, "prune", "old", "web", "--keep-last", "5", "--order", "created", "--root",
                              str(reg.root), "--dry-run", "--grace", "0s")
    assert code == 0, err
    lines = text.splitlines()
    assert lines[1].split() == ["REPOSITORY", "TAG", "CREATED", "FREES", "DECISION"]
    assert lines[2].split()[:2] == ["old", "1.0"] and "(pushed)" in lines[2]
    assert lines[3].split()[:3] == ["web", "stable", "2024-07-01T00:00:00Z"]
