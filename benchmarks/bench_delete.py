#!/usr/bin/env python3
"""End-to-end `regprune delete` of one repository against the registry's GC dry-run.

    python benchmarks/bench_delete.py SRC [--repo NAME] [--runs 3] [--cold]
        [--copy-dir /tmp/regprune-delete] [--json OUT]

SRC is a registry rootdirectory (e.g. /tmp/bench-tree from gen_tree.py); it is never modified.
Each round:
  1. `cp -a SRC COPY` and `sync` (not timed);
  2. gc        docker-registry garbage-collect --dry-run CONFIG   (rootdirectory: COPY, still pristine:
                a dry run changes nothing)
     regprune  regprune delete REPO --yes --grace 0s --force --quiet --root COPY
  3. check that COPY's repository directory is gone, then remove COPY (not timed).
Both tools run on the same copy: a fresh copy's directories are laid out differently from SRC's (the
GC dry run measured 4.6-4.7 s on a copy against 5.0-5.5 s on the benchmark tree it came from). Both
runs find COPY warm (cp has just written it); with --cold the page cache is dropped before each.
Without --repo a repository is chosen: the first leaf repository (no repository nested under it),
by name, whose tag count is the tree's median.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

DEFAULT_CMD = "regprune delete {repo} --yes --grace 0s --force --quiet --root {root}"


def repositories(v2):
    """{name: tag count} for every directory holding _manifests, and the set of names with a
    repository nested under them."""
    base = os.path.join(v2, "repositories")
    repos, parents = {}, set()
    for dirpath, dirnames, _ in os.walk(base):
        if "_manifests" in dirnames:
            name = os.path.relpath(dirpath, base)
            try:
                tags = len(os.listdir(os.path.join(dirpath, "_manifests", "tags")))
            except OSError:
                tags = 0
            repos[name] = tags
        dirnames[:] = [d for d in dirnames if not d.startswith("_")]
    for name in repos:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parents.add("/".join(parts[:i]))
    return repos, parents


def main(argv=None):
    ap = argparse.ArgumentParser(description="regprune delete of one repository vs the registry GC dry-run.")
    ap.add_argument("src", help="registry rootdirectory to copy (never modified)")
    ap.add_argument("--repo", help="repository to delete (default: chosen, see --help)")
    ap.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every timed run (root)")
    ap.add_argument("--copy-dir", default="/tmp/regprune-delete", help="where the per-round copy goes")
    ap.add_argument("--margin-gb", type=float, default=5.0, help="free space to leave (default 5 GB)")
    ap.add_argument("--cmd", default=DEFAULT_CMD, help=f"regprune template, {{repo}} {{root}} replaced (default {DEFAULT_CMD!r})")
    ap.add_argument("--gc-cmd", default="docker-registry", help="registry binary (default docker-registry)")
    ap.add_argument("--json", metavar="OUT", help="write all runs and results to OUT")
    args = ap.parse_args(argv)

    src = os.path.abspath(args.src)
    v2 = os.path.join(src, "docker", "registry", "v2")
    if not os.path.isdir(v2):
        ap.error(f"{v2} does not exist")
    repos, parents = repositories(v2)
    if args.repo:
        if args.repo not in repos:
            ap.error(f"no repository {args.repo!r} in {src}")
        repo = args.repo
    else:
        leaves = sorted(n for n in repos if n not in parents)
        med = statistics.median_low([repos[n] for n in leaves])
        repo = next(n for n in leaves if repos[n] == med)
    benchlib.log("src %s: %d repositories; deleting %r (%d tags)" % (src, len(repos), repo, repos[repo]))

    used_kib = int(subprocess.run(["du", "-sk", src], stdout=subprocess.PIPE, check=True).stdout.split()[0])
    os.makedirs(args.copy_dir, exist_ok=True)
    free = shutil.disk_usage(args.copy_dir).free
    if free < used_kib * 1024 * 1.1 + args.margin_gb * 1e9:
        ap.error("not enough space on %s for a copy: %.1f GB free, %.1f GB needed + margin" % (
            args.copy_dir, free / 1e9, used_kib * 1024 / 1e9))

    work = tempfile.mkdtemp(prefix="bench-delete-")
    copy = os.path.join(os.path.abspath(args.copy_dir), "copy")
    config = benchlib.gc_config(copy, os.path.join(work, "config.yml"))
    cold = False
    notes = []
    if args.cold:
        err = benchlib.drop_caches()
        if err:
            notes.append("COLD REQUESTED BUT NOT POSSIBLE (%s): results are WARM" % err)
            benchlib.log("!!! " + notes[-1])
        else:
            cold = True
    mode = "cold" if cold else "warm"

    runs = {"regprune": [], "gc": []}
    copy_s = []
    try:
        for i in range(args.runs):
            if os.path.exists(copy):
                subprocess.call(["rm", "-rf", "--one-file-system", copy])
            t0 = time.perf_counter()
            subprocess.run(["cp", "-a", src, copy], check=True)
            subprocess.call(["sync"])
            copy_s.append(time.perf_counter() - t0)
            benchlib.log("  round %d: copy took %.0f s (not timed)" % (i + 1, copy_s[-1]))
            for tool in ("gc", "regprune"):  # the dry run first, while COPY is still whole
                if cold:
                    e = benchlib.drop_caches()
                    if e:
                        raise SystemExit("dropping caches failed mid-run: " + e)
                if tool == "regprune":
                    argv = [a.replace("{repo}", repo).replace("{root}", copy) for a in shlex.split(args.cmd)]
                    r = benchlib.run_measured(argv, poll=False)
                    gone = not os.path.exists(os.path.join(copy, "docker", "registry", "v2", "repositories", repo))
                    r["repo_gone"] = gone
                    if r["code"] != 0 or not gone:
                        notes.append("round %d: regprune exit %d, repository %s: %s" % (
                            i + 1, r["code"], "gone" if gone else "STILL THERE", r["stderr_tail"].strip()))
                else:
                    out = os.path.join(work, "gc.out")
                    with open(out, "wb") as f:
                        r = benchlib.run_measured([args.gc_cmd, "garbage-collect", "--dry-run", config], stdout=f,
                                                  poll=False)
                    if r["code"] != 0:
                        notes.append("round %d: gc exit %d: %s" % (i + 1, r["code"], r["stderr_tail"].strip()))
                ok = r["code"] == 0 and r.get("repo_gone", True)
                if ok:
                    runs[tool].append(r)
                benchlib.log("  round %d %-8s %7.2f s  %6.1f MiB%s" % (
                    i + 1, tool, r["wall_s"], benchlib.mib(r["main_kib"]) or 0, "" if ok else "  FAILED"))
    finally:
        if os.path.exists(copy):
            subprocess.call(["rm", "-rf", "--one-file-system", copy])
        shutil.rmtree(work, ignore_errors=True)

    med = {t: benchlib.median([r["wall_s"] for r in rs]) for t, rs in runs.items()}
    print()
    print("delete of one repository (%r, %d tags) on a copy of %s vs garbage-collect --dry-run; %s, %d rounds" % (
        repo, repos[repo], src, mode.upper(), args.runs))
    print("%-9s %9s %9s %9s %10s" % ("tool", "median s", "min s", "max s", "peak MiB"))
    for t, rs in runs.items():
        ws = [r["wall_s"] for r in rs]
        print("%-9s %9s %9s %9s %10s" % (t, benchlib.fmt(med[t], "%.2f"), benchlib.fmt(min(ws, default=None), "%.2f"),
                                         benchlib.fmt(max(ws, default=None), "%.2f"),
                                         benchlib.fmt(max([benchlib.mib(r["main_kib"]) or 0 for r in rs], default=None))))
    print("regprune delete / gc dry-run (median time): %s (target <= 0.60x)" % benchlib.ratio(med["regprune"], med["gc"]))
    print("(peak MiB: the main process, GNU time %M)")
    for n in notes:
        print("NOTE: " + n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"src": src, "repo": repo, "tags": repos[repo], "mode": mode, "cpus": os.cpu_count(),
                       "runs": runs, "median_s": med, "copy_s": copy_s, "notes": notes,
                       "ratio": (med["regprune"] / med["gc"]) if med["regprune"] and med["gc"] else None,
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
            f.write("\n")
        print("wrote " + args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
