#!/usr/bin/env python3
"""Time regprune against the registry's own garbage collector and a bare `find`.

    python benchmarks/bench_du.py ROOT [--runs 5] [--cold] [--warmup 1]
        [--cmd 'regprune du --root {root} --json --quiet']
        [--gc-cmd docker-registry] [--json OUT]

ROOT is a registry rootdirectory (the one holding docker/registry/v2), e.g. a tree
written by benchmarks/gen_tree.py. Each round runs, in rotating order:

  regprune  the --cmd template ({root} is replaced by ROOT)
  gc        docker-registry garbage-collect --dry-run CONFIG   (CONFIG written to a temp file)
  find      find ROOT -type f   (output to /dev/null)

Each command is started directly (no shell unless the template needs one), in a fresh
`/usr/bin/time -f %M` wrapper when available, so its peak RSS is that of this one
child (and its waited-for descendants), not the max over everything this script ran.
Wall time is measured around spawn..reap (the wrapper adds about a millisecond).

With --cold the page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before
every timed run; if that is not permitted the results are loudly marked as warm.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import drop_caches  # the script's own folder is on sys.path

DEFAULT_CMD = "regprune du --root {root} --json --quiet"
SHELL_CHARS = set("|&;<>()$`*?[]{}~\n")
GC_SUMMARY = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")




def build_argv(template, root):
    """Turn a command template into an argv; use sh -c when it needs a shell."""
    quoted = shlex.quote(root)
    # Replace {root} first, then decide whether the remainder needs a shell.
    probe = template.replace("{root}", "")
    if any(c in SHELL_CHARS for c in probe):
        return ["/bin/sh", "-c", template.replace("{root}", quoted)], True
    return [a.replace("{root}", root) for a in shlex.split(template)], False


TIME_BIN = "/usr/bin/time"


def run_once(argv, out_path, err_path, rss_path):
    """Run argv; return (wall seconds, peak RSS KiB, exit code).

    Peak RSS: on Linux a child's ru_maxrss starts at the RSS of the process it was forked
    from (exec keeps the pre-exec high-water mark), so reaping a child forked straight from
    this ~15 MiB Python process would report at least ~15 MiB. When GNU time is available
    the command runs under `/usr/bin/time -f %M`, a ~1 MiB process, which reports the
    ru_maxrss of its one child. Otherwise os.wait4() is used (floor: this process's RSS).
    """
    use_time = os.access(TIME_BIN, os.X_OK)
    full = [TIME_BIN, "-f", "%M", "-o", rss_path] + argv if use_time else argv
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err, close_fds=True)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (status >> 8)
    proc.returncode = code  # reaped by us; keep Popen from trying again
    rss_kib = None
    if use_time:
        try:
            with open(rss_path) as f:
                # "Command exited with non-zero status N" may precede the number.
                nums = [ln.strip() for ln in f if ln.strip().isdigit()]
            rss_kib = float(nums[-1]) if nums else None
        except OSError:
            rss_kib = None
    if rss_kib is None:
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        rss_kib = ru.ru_maxrss / 1024.0 if sys.platform == "darwin" else float(ru.ru_maxrss)
    return wall, rss_kib, code


def tail(path, n=5):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4000))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Benchmark regprune vs the registry GC dry-run vs find.")
    ap.add_argument("root", help="registry rootdirectory (holds docker/registry/v2)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds first (default 1; ignored with --cold when caches can be dropped)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every timed run")
    ap.add_argument("--cmd", default=DEFAULT_CMD,
                    help=f"regprune command template, {{root}} is replaced (default: {DEFAULT_CMD!r})")
    ap.add_argument("--gc-cmd", default="docker-registry", help="registry binary (default docker-registry)")
    ap.add_argument("--only", default="regprune,gc,find",
                    help="comma-separated subset of tools to run (default regprune,gc,find)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    args = ap.parse_args(argv)

    root = os.path.abspath(args.root)
    if not os.path.isdir(os.path.join(root, "docker", "registry", "v2")):
        print(f"warning: {root}/docker/registry/v2 does not exist; is ROOT the registry's rootdirectory?",
              file=sys.stderr)

    workdir = tempfile.mkdtemp(prefix="regprune-bench-")
    config = os.path.join(workdir, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {json.dumps(root)}\n")

    wanted = [t.strip() for t in args.only.split(",") if t.strip()]
    tools = {}  # name -> dict(argv, shell, skip)
    rp_argv, rp_shell = build_argv(args.cmd, root)
    tools["regprune"] = {"argv": rp_argv, "shell": rp_shell}
    tools["gc"] = {"argv": [args.gc_cmd, "garbage-collect", "--dry-run", config], "shell": False}
    tools["find"] = {"argv": ["find", root, "-type", "f"], "shell": False}
    notes = []
    for name in list(tools):
        t = tools[name]
        t.update(runs=[], rss=[], codes=[], skip=None)
        if name not in wanted:
            t["skip"] = "not selected"
            continue
        exe = t["argv"][0]
        if not t["shell"] and shutil.which(exe) is None:
            t["skip"] = f"command not found: {exe}"
            notes.append("{} skipped: {}".format(name, t["skip"]))

    # Cold or warm?
    cold = False
    cold_error = None
    if args.cold:
        cold_error = drop_caches()
        if cold_error is None:
            cold = True
        else:
            bar = "!" * 78
            print(bar, file=sys.stderr)
            print(f"!!! --cold requested but the page cache cannot be dropped ({cold_error}).", file=sys.stderr)
            print("!!! ALL RESULTS BELOW ARE WARM-CACHE NUMBERS.", file=sys.stderr)
            print(bar, file=sys.stderr)
            notes.append(f"COLD REQUESTED BUT NOT POSSIBLE ({cold_error}): results are WARM")
    mode = "cold" if cold else "warm"

    order = [n for n in ("regprune", "gc", "find") if tools[n]["skip"] is None]
    if not order:
        print("nothing to run", file=sys.stderr)
        return 2

    def run_tool(name, timed):
        t = tools[name]
        if t["skip"]:
            return
        if cold:
            err = drop_caches()
            if err:
                raise SystemExit(f"dropping caches failed mid-run: {err}")
        out_path = os.path.join(workdir, f"{name}.out")
        err_path = os.path.join(workdir, f"{name}.err")
        rss_path = os.path.join(workdir, f"{name}.rss")
        try:
            wall, rss, code = run_once(t["argv"], out_path, err_path, rss_path)
        except OSError as e:
            t["skip"] = f"cannot run: {e}"
            notes.append("{} skipped: {}".format(name, t["skip"]))
            return
        if code != 0:
            t["skip"] = "exit code %d: %s" % (code, tail(err_path, 3).replace("\n", " | "))
            notes.append("{} FAILED ({}); its timings are discarded".format(name, t["skip"]))
            t["runs"], t["rss"] = [], []
            return
        if name == "gc" and "summary" not in t:
            m = None
            with open(out_path, "rb") as f:
                for line in f:
                    mm = GC_SUMMARY.search(line.decode("utf-8", "replace"))
                    if mm:
                        m = mm
            if m:
                t["summary"] = {"marked": int(m.group(1)), "eligible_blobs": int(m.group(2)),
                                "eligible_manifests": int(m.group(3))}
        if name == "regprune" and "output_bytes" not in t:
            t["output_bytes"] = os.path.getsize(out_path)
        if timed:
            t["runs"].append(wall)
            t["rss"].append(rss)
            t["codes"].append(code)
        sys.stderr.write("  %-8s %8.3f s  %8.1f MiB%s\n" % (name, wall, rss / 1024.0, "" if timed else "  (warm-up)"))
        sys.stderr.flush()

    print("root: %s   mode: %s   runs: %d" % (root, mode.upper(), args.runs), file=sys.stderr)
    if not cold:
        for _i in range(max(0, args.warmup)):
            for name in order:
                run_tool(name, False)
    for r in range(args.runs):
        # Rotate the order each round so no tool always runs right after another.
        k = r % len(order)
        for name in order[k:] + order[:k]:
            run_tool(name, True)

    results = {}
    for name in ("regprune", "gc", "find"):
        t = tools[name]
        res = {"command": t["argv"], "skipped": t["skip"], "wall_s": t["runs"], "peak_rss_kib": t["rss"]}
        if t["runs"]:
            res["median_s"] = statistics.median(t["runs"])
            res["min_s"] = min(t["runs"])
            res["max_s"] = max(t["runs"])
            res["median_rss_mib"] = statistics.median(t["rss"]) / 1024.0
            res["max_rss_mib"] = max(t["rss"]) / 1024.0
        for extra in ("summary", "output_bytes"):
            if extra in t:
                res[extra] = t[extra]
        results[name] = res

    def med(name):
        return results[name].get("median_s")

    def rss(name):
        return results[name].get("max_rss_mib")

    ratios = {
        "regprune_over_gc_time": (med("regprune") / med("gc")) if med("regprune") and med("gc") else None,
        "regprune_over_find_time": (med("regprune") / med("find")) if med("regprune") and med("find") else None,
        "regprune_over_gc_rss": (rss("regprune") / rss("gc")) if rss("regprune") and rss("gc") else None,
    }

    print()
    print("mode: %s%s   runs: %d   root: %s" % (mode.upper(), "" if cold or not args.cold else
                                                  "  (!!! --cold FAILED, these are WARM numbers)",
                                                  args.runs, root))
    print("%-9s %10s %10s %10s %12s  %s" % ("tool", "median s", "min s", "max s", "peak RSS MiB", "status"))
    for name in ("regprune", "gc", "find"):
        res = results[name]
        if "median_s" in res:
            print("%-9s %10.3f %10.3f %10.3f %12.1f  ok (%d runs)" % (
                name, res["median_s"], res["min_s"], res["max_s"], res["max_rss_mib"], len(res["wall_s"])))
        else:
            print("%-9s %10s %10s %10s %12s  %s" % (name, "-", "-", "-", "-", res["skipped"] or "no runs"))
    print()
    print("regprune / gc   (median time): {}".format(fmt_ratio(med("regprune"), med("gc"))))
    print("regprune / find (median time): {}".format(fmt_ratio(med("regprune"), med("find"))))
    print("regprune / gc   (peak RSS)   : {}".format(fmt_ratio(rss("regprune"), rss("gc"))))
    print("regprune peak memory         : %s" % ("{:.1f} MiB".format(rss("regprune")) if rss("regprune") else "n/a"))
    if "summary" in results["gc"]:
        s = results["gc"]["summary"]
        print("gc dry-run: %d blobs marked, %d blobs and %d manifests eligible" % (
            s["marked"], s["eligible_blobs"], s["eligible_manifests"]))
    for n in notes:
        print(f"NOTE: {n}")

    if args.json:
        doc = {"root": root, "mode": mode, "cold_requested": args.cold, "cold_error": cold_error,
               "runs": args.runs, "warmup": 0 if cold else args.warmup, "cpus": os.cpu_count(),
               "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "tools": results, "ratios": ratios, "notes": notes}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
