#!/usr/bin/env python3
"""Hashing throughput of `regprune check --verify-digests` against sha256sum run in parallel.

    python benchmarks/bench_verify.py [ROOT] [--runs 3] [--modes warm,cold] [--keep]
        [--dir /tmp/regprune-verify] [--gen-args '--repos 100 --tags 5 --layer-bytes 16K-16M']
        [--no-scan] [--json OUT]

Without ROOT a tree with real data volume is generated under --dir with benchmarks/gen_tree.py
--gen-args (default: 100 repositories x 5 tags, layers log-uniform 16 KiB..16 MiB, shared base
layers 4x that: about 4-5 GB of blobs), and deleted at the end unless --keep. ROOT itself is never
modified.

Tools, run once per round in rotating order:
  regprune  regprune check --verify-digests --json --quiet --root ROOT  (end to end: scan + hashing)
  sha256sum find ROOT/docker/registry/v2/blobs -name data -print0 | xargs -0 -P NPROC -n 64 sha256sum
  scan      regprune check --json --quiet --root ROOT (no hashing; only to estimate how much of
            regprune's time is the scan; --no-scan leaves it out)

Throughput = total bytes of blobs/**/data / median wall time, for each tool. "regprune hashing
only" uses (median regprune - median scan). Modes: warm (one untimed round first) and cold
(`sync; echo 3 > /proc/sys/vm/drop_caches` before every timed run; needs root, and if it is not
permitted the cold mode is skipped with a loud note, never silently run warm).
regprune's peak memory is measured as in bench_memory.py (main process via GNU time, the tree of
forked processes sampled from /proc every 100 ms).
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GEN = "--repos 100 --tags 5 --layer-bytes 16K-16M"
REGPRUNE = "regprune check --verify-digests --json --quiet --root {root}"
SCAN = "regprune check --json --quiet --root {root}"
SHA = "find {blobs} -name data -print0 | xargs -0 -P {nproc} -n 64 sha256sum > /dev/null"


def blob_bytes(root):
    base = os.path.join(root, "docker", "registry", "v2", "blobs", "sha256")
    total = count = 0
    for d in os.scandir(base):
        if not d.is_dir(follow_symlinks=False):
            continue
        for b in os.scandir(d.path):
            try:
                total += os.stat(os.path.join(b.path, "data")).st_size
                count += 1
            except OSError:
                pass
    return total, count


def main(argv=None):
    ap = argparse.ArgumentParser(description="regprune check --verify-digests vs parallel sha256sum.")
    ap.add_argument("root", nargs="?", help="existing registry rootdirectory (default: generate one)")
    ap.add_argument("--runs", type=int, default=3, help="timed rounds per mode (default 3)")
    ap.add_argument("--modes", default="warm,cold", help="warm, cold or both (default warm,cold)")
    ap.add_argument("--dir", default="/tmp/regprune-verify", help="where to generate the tree")
    ap.add_argument("--gen-args", default=DEFAULT_GEN, help=f"gen_tree.py flags (default {DEFAULT_GEN!r})")
    ap.add_argument("--min-free-gb", type=float, default=15.0,
                    help="refuse to generate with less free space than this on --dir (default 15)")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    ap.add_argument("--no-scan", action="store_true", help="do not run the scan-only regprune check")
    ap.add_argument("--cmd", default=REGPRUNE, help=f"regprune command template (default {REGPRUNE!r})")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="sha256sum processes (default: CPUs)")
    ap.add_argument("--json", metavar="OUT", help="write all runs and results to OUT")
    args = ap.parse_args(argv)

    notes = []
    generated = None
    if args.root:
        root = os.path.abspath(args.root)
    else:
        os.makedirs(args.dir, exist_ok=True)
        free = shutil.disk_usage(args.dir).free
        if free < args.min_free_gb * 1e9:
            ap.error("only %.1f GB free on %s (< --min-free-gb %.0f)" % (free / 1e9, args.dir, args.min_free_gb))
        root = generated = os.path.join(os.path.abspath(args.dir), "tree")
        if os.path.exists(root):
            shutil.rmtree(root)
        cmd = [sys.executable, os.path.join(HERE, "gen_tree.py"), root] + shlex.split(args.gen_args)
        benchlib.log("generating: " + " ".join(shlex.quote(c) for c in cmd))
        t0 = time.perf_counter()
        out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout.decode()
        benchlib.log(out.rstrip())
        benchlib.log("generated in %.0f s" % (time.perf_counter() - t0))
        subprocess.call(["sync"])

    try:
        total, count = blob_bytes(root)
        blobs_dir = os.path.join(root, "docker", "registry", "v2", "blobs")
        tools = {
            "regprune": (args.cmd.replace("{root}", shlex.quote(root)), False),
            "sha256sum": (SHA.format(blobs=shlex.quote(blobs_dir), nproc=args.jobs), True),
        }
        if not args.no_scan:
            tools["scan"] = (SCAN.replace("{root}", shlex.quote(root)), False)
        order = list(tools)
        benchlib.log("root %s: %d blobs, %.0f MB of blob data; %d CPUs" % (root, count, total / 1e6, os.cpu_count()))

        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        results = {}
        for mode in modes:
            cold = mode == "cold"
            if cold:
                err = benchlib.drop_caches()
                if err:
                    notes.append("COLD MODE SKIPPED: cannot drop the page cache (%s)" % err)
                    benchlib.log("!!! " + notes[-1])
                    continue
            runs = {t: [] for t in order}

            def run(tool, timed, cold=cold, mode=mode, runs=runs):
                cmd, shell = tools[tool]
                if cold:
                    e = benchlib.drop_caches()
                    if e:
                        raise SystemExit("dropping caches failed mid-run: " + e)
                argv = cmd if shell else shlex.split(cmd)
                r = benchlib.run_measured(argv, shell=shell, poll=tool != "sha256sum", interval=0.1)
                ok = r["code"] == 0
                benchlib.log("  %-5s %-9s %8.2f s  %7.0f MB/s  %s%s" % (
                    mode, tool, r["wall_s"], total / 1e6 / r["wall_s"],
                    "tree RSS %.0f MiB" % benchlib.mib(r["tree_rss_kib"]) if "tree_rss_kib" in r else "",
                    "" if timed else "  (warm-up)"))
                if not ok:
                    notes.append("%s %s exit %d: %s" % (mode, tool, r["code"], r["stderr_tail"].strip()))
                    benchlib.log("  FAILED: " + r["stderr_tail"].strip())
                elif timed:
                    runs[tool].append(r)

            if not cold:
                for tool in order:
                    run(tool, False)
            for i in range(args.runs):
                k = i % len(order)
                for tool in order[k:] + order[:k]:
                    run(tool, True)
            res = {}
            for tool in order:
                rs = runs[tool]
                res[tool] = {"runs": rs,
                             "median_s": benchlib.median([r["wall_s"] for r in rs]),
                             "min_s": min([r["wall_s"] for r in rs], default=None),
                             "max_s": max([r["wall_s"] for r in rs], default=None),
                             "max_main_kib": max([r["main_kib"] or 0 for r in rs], default=None),
                             "max_tree_rss_kib": max([r.get("tree_rss_kib") or 0 for r in rs], default=None),
                             "max_tree_pss_kib": max([r.get("tree_pss_kib") or 0 for r in rs], default=None)}
            results[mode] = res

        print()
        print("check --verify-digests vs parallel sha256sum: %d blobs, %.0f MB (%.2f GiB) of blob data, %d CPUs, "
              "%d timed rounds per mode" % (count, total / 1e6, total / 2 ** 30, os.cpu_count(), args.runs))
        print("%-5s %-10s %9s %9s %9s %9s %10s %10s" % ("mode", "tool", "median s", "min s", "max s", "MB/s",
                                                        "main MiB", "tree MiB"))
        summary = {}
        for mode, res in results.items():
            for tool in order:
                r = res[tool]
                mbs = total / 1e6 / r["median_s"] if r["median_s"] else None
                r["mb_per_s"] = mbs
                print("%-5s %-10s %9s %9s %9s %9s %10s %10s" % (
                    mode, tool, benchlib.fmt(r["median_s"], "%.2f"), benchlib.fmt(r["min_s"], "%.2f"),
                    benchlib.fmt(r["max_s"], "%.2f"), benchlib.fmt(mbs, "%.0f"),
                    benchlib.fmt(benchlib.mib(r["max_main_kib"]) if tool != "sha256sum" else None),
                    benchlib.fmt(benchlib.mib(r["max_tree_rss_kib"]) if tool != "sha256sum" else None)))
            rp, sh = res["regprune"]["median_s"], res["sha256sum"]["median_s"]
            line = "%-5s regprune / sha256sum throughput (end to end): %s (target >= 0.80x)" % (
                mode, benchlib.ratio(sh, rp))
            s = {"throughput_ratio": (sh / rp) if rp and sh else None}
            if "scan" in res and res["scan"]["median_s"] and rp and rp > res["scan"]["median_s"]:
                hash_s = rp - res["scan"]["median_s"]
                s["hash_only_ratio"] = sh / hash_s if sh else None
                line += "; hashing only (minus scan median %.2f s): %.0f MB/s, %s" % (
                    res["scan"]["median_s"], total / 1e6 / hash_s, benchlib.ratio(sh, hash_s))
            summary[mode] = s
            print(line)
        print("regprune peak memory during verify: main %s MiB, process tree %s MiB (sum of RSS; PSS %s MiB)" % (
            benchlib.fmt(max([benchlib.mib(r["regprune"]["max_main_kib"]) for r in results.values()], default=None)),
            benchlib.fmt(max([benchlib.mib(r["regprune"]["max_tree_rss_kib"]) for r in results.values()], default=None)),
            benchlib.fmt(max([benchlib.mib(r["regprune"]["max_tree_pss_kib"]) for r in results.values()], default=None))))
        for n in notes:
            print("NOTE: " + n)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"root": root, "blob_bytes": total, "blobs": count, "cpus": os.cpu_count(),
                           "gen_args": args.gen_args if generated else None, "tools": {k: v[0] for k, v in tools.items()},
                           "results": results, "summary": summary, "notes": notes,
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
                f.write("\n")
            print("wrote " + args.json)
    finally:
        if generated and not args.keep:
            subprocess.call(["rm", "-rf", "--one-file-system", generated])
    return 0


if __name__ == "__main__":
    sys.exit(main())
