#!/usr/bin/env python3
"""Peak memory of `regprune du` against the number of blobs, with a least-squares line.

    python benchmarks/bench_memory.py [--sizes 25k,50k,110k,250k,500k,1M] [--runs 3]
        [--dir /tmp/regprune-mem] [--keep] [--margin-gb 5]
        [--cmd 'regprune du --root {root} --json --quiet'] [--json OUT]

For each size a tree is generated with benchmarks/gen_tree.py, scaling --repos only (every other
parameter at its default, so the shape of the tree -- tags, layers, links per blob -- stays that of
the default 116k-blob tree and only its size changes: about 58 blobs per repository). Before each
generation the free space and inodes of --dir are checked against an estimate (23.5 KB and 6.1
inodes per blob, measured on the default tree) plus --margin-gb; the first size that does not fit
and every larger one are skipped. Each tree is deleted after it is measured unless --keep.

Each command runs --runs times; per run (see benchlib.run_measured):
  main peak  ru_maxrss of the regprune process (GNU time %M), exact;
  tree RSS   largest sampled sum of VmRSS over regprune and its forked scan processes
             (upper bound: copy-on-write pages shared after fork are counted twice);
  tree PSS   largest sampled sum of Pss (shared pages split), i.e. the physical memory used.
Medians per size are fitted with MiB = a + b * blobs (least squares) and the line is evaluated
at 110k and 1M blobs.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CMD = "regprune du --root {root} --json --quiet"
BLOBS_PER_REPO = 58.14     # default tree: 116,351 blobs / 2,000 repositories
FIXED_BLOBS = 70           # 50 base layers + 20 orphans, independent of --repos
BYTES_PER_BLOB = 23500     # default tree: 2.7 GB on disk / 116k blobs (one block per file and dir)
INODES_PER_BLOB = 6.1      # default tree: ~700k inodes / 116k blobs
TARGETS = ((110000, 150.0), (1000000, 600.0))


def parse_size(s):
    s = s.strip().lower()
    mult = 1
    if s.endswith("k"):
        mult, s = 1000, s[:-1]
    elif s.endswith("m"):
        mult, s = 1000000, s[:-1]
    return int(float(s) * mult)


def fits(path, blobs, margin_bytes):
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    need = blobs * BYTES_PER_BLOB * 1.15 + margin_bytes
    inodes_free = st.f_favail if st.f_files else None  # some filesystems have no inode limit
    inodes_need = blobs * INODES_PER_BLOB * 1.15
    ok = free >= need and (inodes_free is None or inodes_free >= inodes_need)
    why = "need %.1f GB + %.1f GB margin, %.1f GB free; need %.1fM inodes, %s free" % (
        (need - margin_bytes) / 1e9, margin_bytes / 1e9, free / 1e9, inodes_need / 1e6,
        "unlimited" if inodes_free is None else "%.1fM" % (inodes_free / 1e6))
    return ok, why


def generate(root, repos, jobs):
    cmd = [sys.executable, os.path.join(HERE, "gen_tree.py"), root, "--repos", str(repos)]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout.decode()
    secs = time.perf_counter() - t0
    stats = {}
    for key in ("repositories", "tags", "manifests", "blobs", "files", "directories"):
        m = re.search(r"^\s*%s\s+(\d+)" % key, out, re.M)
        stats[key] = int(m.group(1)) if m else None
    return stats, secs


def remove_tree(root, procs):
    """rm -rf ROOT, split over `procs` rm processes (unlinking millions of files is slow, and the
    256 blob prefix directories and the repositories are independent)."""
    v2 = os.path.join(root, "docker", "registry", "v2")
    parts = []
    for sub in (os.path.join(v2, "blobs", "sha256"), os.path.join(v2, "repositories")):
        try:
            parts += [os.path.join(sub, n) for n in sorted(os.listdir(sub))]
        except OSError:
            pass
    running = [subprocess.Popen(["rm", "-rf", "--one-file-system"] + parts[i::procs])
               for i in range(procs) if parts[i::procs]]
    for p in running:
        p.wait()
    subprocess.call(["rm", "-rf", "--one-file-system", root])


def fit(xs, ys):
    """Least squares y = a + b x; returns (a, b, r2) or None with fewer than 2 distinct x."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    b = sxy / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
    return a, b, r2


def main(argv=None):
    ap = argparse.ArgumentParser(description="Peak memory of regprune du against blob count.")
    ap.add_argument("--sizes", default="25k,50k,110k,250k,500k,1M",
                    help="target blob counts, ascending (default 25k,50k,110k,250k,500k,1M)")
    ap.add_argument("--runs", type=int, default=3, help="runs per size (default 3; medians reported)")
    ap.add_argument("--dir", default="/tmp/regprune-mem", help="where trees are generated (default /tmp/regprune-mem)")
    ap.add_argument("--keep", action="store_true", help="keep the generated trees")
    ap.add_argument("--margin-gb", type=float, default=5.0, help="free space to leave on --dir (default 5 GB)")
    ap.add_argument("--reuse", action="append", default=[], metavar="ROOT",
                    help="also measure this existing tree (never modified or deleted); repeatable")
    ap.add_argument("--jobs", type=int, default=0, help="gen_tree.py --jobs (default: its own default)")
    ap.add_argument("--budget-min", type=float, default=0,
                    help="skip a size (and larger ones) when generating, measuring and removing it would end "
                         "past this many minutes from the start, judging by the previous size scaled linearly "
                         "(default 0: no limit)")
    ap.add_argument("--rm-procs", type=int, default=4, help="parallel rm processes to delete a tree (default 4)")
    ap.add_argument("--cmd", default=DEFAULT_CMD, help=f"command template, {{root}} replaced (default {DEFAULT_CMD!r})")
    ap.add_argument("--interval", type=float, default=0.02, help="/proc sampling interval in s (default 0.02)")
    ap.add_argument("--json", metavar="OUT", help="write all runs and the fit to OUT")
    args = ap.parse_args(argv)

    sizes = sorted(parse_size(s) for s in args.sizes.split(",") if s.strip())
    os.makedirs(args.dir, exist_ok=True)
    margin = args.margin_gb * 1e9
    rows, notes = [], []
    last_cost = None  # (blobs, seconds) of the last generated size: generate + measure + remove
    t_start = time.time()

    def measure(root, label, stats, gen_s):
        runs = []
        for i in range(args.runs):
            argv = [a.replace("{root}", root) for a in shlex.split(args.cmd)]
            r = benchlib.run_measured(argv, interval=args.interval)
            if r["code"] != 0:
                notes.append("%s run %d FAILED (exit %d): %s" % (label, i + 1, r["code"], r["stderr_tail"].strip()))
                benchlib.log("  FAILED: " + r["stderr_tail"].strip())
                continue
            runs.append(r)
            benchlib.log("  run %d: %6.1f s  main %6.1f MiB  tree RSS %6.1f MiB  tree PSS %6.1f MiB  (%d procs)" % (
                i + 1, r["wall_s"], benchlib.mib(r["main_kib"]) or 0, benchlib.mib(r["tree_rss_kib"]),
                benchlib.mib(r["tree_pss_kib"]), r["procs"]))
        row = {"label": label, "root": root, "gen_s": gen_s, "runs": runs}
        row.update(stats)
        for k in ("wall_s", "main_kib", "tree_rss_kib", "tree_pss_kib"):
            row["median_" + k] = benchlib.median([r[k] for r in runs])
        rows.append(row)

    for root in args.reuse:
        root = os.path.abspath(root)
        v2 = os.path.join(root, "docker", "registry", "v2", "blobs", "sha256")
        blobs = sum(len(os.listdir(os.path.join(v2, d))) for d in os.listdir(v2))
        benchlib.log("== existing tree %s: %d blobs" % (root, blobs))
        measure(root, "reuse", {"blobs": blobs}, None)

    for target in sizes:
        repos = max(1, round((target - FIXED_BLOBS) / BLOBS_PER_REPO))
        ok, why = fits(args.dir, target, margin)
        if not ok:
            notes.append("skipped %d blobs and larger: does not fit (%s)" % (target, why))
            benchlib.log("== %d blobs: SKIPPED, does not fit (%s)" % (target, why))
            break
        if args.budget_min and last_cost:
            est = last_cost[1] * target / last_cost[0]
            left = args.budget_min * 60 - (time.time() - t_start)
            if est > left:
                notes.append("skipped %d blobs and larger: about %.0f s needed (scaled from %d blobs), %.0f s left "
                             "of --budget-min %g" % (target, est, last_cost[0], max(0, left), args.budget_min))
                benchlib.log("== %d blobs: SKIPPED (%s)" % (target, notes[-1]))
                break
        t_size = time.time()
        root = os.path.join(args.dir, "tree-%d" % target)
        if os.path.exists(root):
            remove_tree(root, args.rm_procs)
        benchlib.log("== %d blobs: generating %s with --repos %d (%s)" % (target, root, repos, why))
        stats, gen_s = generate(root, repos, args.jobs)
        benchlib.log("   generated %s blobs, %s files, %s dirs in %.0f s" % (
            stats["blobs"], stats["files"], stats["directories"], gen_s))
        try:
            measure(root, "gen", stats, gen_s)
        finally:
            if not args.keep:
                t0 = time.perf_counter()
                remove_tree(root, args.rm_procs)
                benchlib.log("   removed in %.0f s" % (time.perf_counter() - t0))
        last_cost = (stats["blobs"] or target, time.time() - t_size)

    rows.sort(key=lambda r: r["blobs"])
    print()
    print("regprune du peak memory against blob count (median of %d runs each; MiB)" % args.runs)
    print("%10s %8s %10s %8s %10s %10s %10s" % ("blobs", "repos", "files", "du s", "main", "tree RSS", "tree PSS"))
    for r in rows:
        print("%10d %8s %10s %8s %10s %10s %10s" % (
            r["blobs"], r.get("repositories") or "-", r.get("files") or "-", benchlib.fmt(r["median_wall_s"]),
            benchlib.fmt(benchlib.mib(r["median_main_kib"])), benchlib.fmt(benchlib.mib(r["median_tree_rss_kib"])),
            benchlib.fmt(benchlib.mib(r["median_tree_pss_kib"]))))
    print()
    fits_out = {}
    measured = {r["blobs"] for r in rows}
    for key, name in (("main_kib", "main"), ("tree_rss_kib", "tree RSS"), ("tree_pss_kib", "tree PSS")):
        pts = [(r["blobs"], benchlib.mib(r["median_" + key])) for r in rows if r["median_" + key] is not None]
        f = fit([p[0] for p in pts], [p[1] for p in pts])
        if f is None:
            print("%-9s: not enough sizes for a line" % name)
            continue
        a, b, r2 = f
        at = {n: a + b * n for n, _ in TARGETS}
        fits_out[name] = {"a_mib": a, "b_mib_per_blob": b, "bytes_per_blob": b * 1048576, "r2": r2,
                          "at": {str(n): v for n, v in at.items()}}
        parts = []
        for n, limit in TARGETS:
            tag = "measured" if any(abs(m - n) / n < 0.1 for m in measured) else "extrapolated"
            parts.append("%s at %s = %.0f MiB (target <= %.0f: %s)" % (
                tag if n == 1000000 else "line", f"{n:,}", at[n], limit, "ok" if at[n] <= limit else "MISSED"))
        print("%-9s: MiB = %.1f + %.1f * blobs/1000  (%.0f bytes/blob, r2 %.3f); %s" % (
            name, a, b * 1000, b * 1048576, r2, "; ".join(parts)))
    for n in notes:
        print("NOTE: " + n)
    print("total wall time %.0f s" % (time.time() - t_start))

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cmd": args.cmd, "runs": args.runs, "cpus": os.cpu_count(), "rows": rows, "fits": fits_out,
                       "notes": notes, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
            f.write("\n")
        print("wrote " + args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
