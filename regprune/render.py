"""Turning report values into aligned text for people. Returns strings; printing is the CLI's job."""

from __future__ import annotations

from typing import List, Sequence

import humanize

from .findings import SEVERITIES


def size(n: int) -> str:
    return humanize.naturalsize(n, binary=True, format="%.1f")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> List[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _finding_summary(findings: List[dict]) -> str:
    counts = {s: 0 for s in SEVERITIES}
    for f in findings:
        counts[f["severity"]] += 1
    if not findings:
        return "findings: none"
    parts = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
    return f"findings: {parts} (`regprune check` lists them)"


def du(report: dict, root: str) -> str:
    out = [f"store: {root}", ""]
    totals = [
        ("blobs stored", report["blobs"]),
        ("orphan blobs", report["orphans"]),
        ("uploads", report["uploads"]),
        ("untagged manifests", report["untagged"]),
        ("trash", report["trash"]),
    ]
    notes = {
        "orphan blobs": "no repository needs them",
        "uploads": "abandoned or in progress",
        "trash": "runs moved aside by --trash (`regprune trash list`)",
        "untagged manifests": "size: what removing them would free",
    }
    rows = [[label, str(v["count"]), size(v["bytes"]), notes.get(label, "")] for label, v in totals]
    out += table(["TOTAL", "COUNT", "SIZE", ""], rows, [False, True, True, False])
    out.append("")
    repo_rows = [
        [r["name"], str(r["tags"]), str(r["manifests"]), str(r["untagged"]), size(r["bytes"]),
         size(r["exclusive_bytes"])]
        for r in report["repositories"]
    ]
    out += table(["REPOSITORY", "TAGS", "MANIFESTS", "UNTAGGED", "SIZE", "EXCLUSIVE"], repo_rows,
                 [False, True, True, True, True, True])
    out += ["", _finding_summary(report["findings"])]
    return "\n".join(out)


def _kind(row: dict) -> str:
    if row["kind"] == "index":
        return f"index ({len(row['platforms'])})"
    return row["kind"]


def ls(report: dict) -> str:
    rows = [
        [r["repository"], ",".join(r["tags"]) or "<untagged>", r["digest"].split(":", 1)[1][:12], _kind(r),
         size(r["bytes"]), size(r["exclusive_bytes"]), r["created"] or "-", r["pushed"] or "-"]
        for r in report["images"]
    ]
    return "\n".join(table(["REPOSITORY", "TAGS", "DIGEST", "KIND", "SIZE", "EXCLUSIVE", "CREATED", "PUSHED"],
                           rows, [False, False, False, False, True, True, False, False]))


def check(report: dict) -> str:
    out = []
    for severity in SEVERITIES:
        group = [f for f in report["findings"] if f["severity"] == severity]
        if not group:
            continue
        out.append(f"{severity} ({len(group)})")
        for f in group:
            detail = f" ({f['detail']})" if f.get("detail") else ""
            out.append(f"  {f['path']}: {f['code']}: {f['value']!r}{detail}")
        out.append("")
    counts = report["counts"]
    if report["damaged"]:
        out.append(f"DAMAGED: {counts['damage']} finding(s) of damage")
    else:
        out.append("OK: no damage found" + (
            f" ({counts['warning']} warning(s), {counts['housekeeping']} housekeeping)"
            if counts["warning"] or counts["housekeeping"] else ""))
    return "\n".join(out)


def plan(doc: dict, title: str) -> str:
    """A plan (dry run) or a result, grouped by repository."""
    by_repo: dict = {}

    def add(repo: str, line: str) -> None:
        by_repo.setdefault(repo, []).append(line)

    for t in doc["tags"]:
        add(t["repo"], f"  tag          {t['tag']}")
    for h in doc.get("tag_history", ()):
        add(h["repo"], f"  tag history  {h['tag']} -> {h['digest']}")
    for m in doc["manifests"]:
        add(m["repo"], f"  manifest     {m['digest']}")
    for x in doc["layer_links"]:
        add(x["repo"], f"  layer link   {x['digest']}")
    for u in doc["uploads"]:
        add(u["repo"], f"  upload       {u['id']}  {size(u['size'])}")
    for name in doc["repositories"]:
        add(name, "  repository   (its _manifests, _layers, _uploads)")
    out = [title]
    for repo in sorted(by_repo):
        out.append(repo)
        out += by_repo[repo]
    if doc["blobs"]:
        out.append("blobs")
        out += [f"  {b['digest']}  {size(b['size'])}" for b in doc["blobs"]]
    amount = f"{'would free' if doc['dry_run'] else 'freed'} {size(doc['bytes_freed'])}"
    if doc.get("trash"):
        amount = f"{'would move' if doc['dry_run'] else 'moved'} {size(doc['bytes_freed'])} to the trash"
    out.append("")
    out.append(f"{amount}: {len(doc['tags'])} tag(s), {len(doc['manifests'])} manifest(s), "
               f"{len(doc['layer_links'])} layer link(s), {len(doc['blobs'])} blob(s), {len(doc['uploads'])} "
               f"upload(s), {len(doc['repositories'])} repositor{'y' if len(doc['repositories']) == 1 else 'ies'}")
    kept = doc["kept_recent"]
    if kept["count"]:
        out.append(f"kept (changed within the grace window): {kept['count']} blob(s), {size(kept['bytes'])}")
    return "\n".join(out)


RESTART_REMINDER = (
    "Restart the registry before it takes pushes again: it caches which blobs exist and would otherwise "
    "accept pushes that skip uploading deleted layers (flush its Redis cache too if it uses one)."
)
