"""Shared helpers for the benchmark scripts (stdlib only, Python 3.9+).

The important piece is `run_measured`: it runs one command and reports its wall time and its peak
memory three ways, because regprune forks scan processes and `/usr/bin/time -f %M` only sees one:

- main peak: `ru_maxrss` of the command itself (GNU time's %M), exact, but only that one process;
- tree RSS:  the largest sum of VmRSS over the command and all its descendants, sampled from /proc
             every `interval` seconds. Pages a forked child still shares copy-on-write with its
             parent are counted in both, so this is an upper bound of what the tree really uses;
- tree PSS:  the same sum using Pss from /proc/PID/smaps_rollup (shared pages split between the
             processes that map them), i.e. the physical memory the tree used. Sampled, so a peak
             shorter than `interval` can be missed; the main peak is a floor for both tree values.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time

TIME_BIN = "/usr/bin/time"
DROP_CACHES = "/proc/sys/vm/drop_caches"


def drop_caches():
    """Drop the page cache; return None on success or an error message."""
    try:
        subprocess.call(["sync"])
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
        return None
    except OSError as e:
        return f"{DROP_CACHES}: {e}"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _ppid(pid):
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses; split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[1])
    except (IndexError, ValueError):
        return None


def _status_kib(pid, *keys):
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(b":")
        k = k.decode("ascii", "replace")
        if k in keys:
            try:
                out[k] = int(v.split()[0])
            except (IndexError, ValueError):
                pass
    return out


def _pss_kib(pid):
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith(b"Pss:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


class TreeSampler(threading.Thread):
    """Poll /proc for the descendants of `root_pid` (excluding root_pid itself when `skip_root`,
    e.g. the GNU time wrapper) and keep the largest RSS and PSS sums seen."""

    def __init__(self, root_pid, interval=0.02, skip_root=True):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.skip_root = skip_root
        self.stop = threading.Event()
        self.max_rss = 0
        self.max_pss = 0
        self.max_procs = 0
        self.samples = 0
        self.hwm = {}  # pid -> VmHWM KiB (last seen): each process's own high-water mark
        self.pss_ok = os.path.exists("/proc/self/smaps_rollup")
        self.rescan = 5
        self._known = None

    def members(self):
        parent = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                pp = _ppid(name)
                if pp is not None:
                    parent[int(name)] = pp
        tree = {self.root_pid}
        changed = True
        while changed:  # a handful of processes: a fixed point is cheap
            changed = False
            for pid, pp in parent.items():
                if pp in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        if self.skip_root:
            tree.discard(self.root_pid)
        return tree

    def sample(self):
        # Finding the descendants means reading every /proc/PID/stat (~1 ms); do it on every
        # `rescan`-th tick only and read just the known members in between.
        if self._known is None or self.samples % self.rescan == 0:
            self._known = self.members()
        rss = pss = n = 0
        for pid in self._known:
            st = _status_kib(pid, "VmRSS", "VmHWM")
            if "VmRSS" not in st:
                continue  # exited or a zombie
            n += 1
            rss += st["VmRSS"]
            if "VmHWM" in st:
                self.hwm[pid] = st["VmHWM"]
            if self.pss_ok:
                p = _pss_kib(pid)
                pss += p if p is not None else st["VmRSS"]
        self.samples += 1
        self.max_rss = max(self.max_rss, rss)
        self.max_pss = max(self.max_pss, pss)
        self.max_procs = max(self.max_procs, n)

    def run(self):
        while not self.stop.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self.stop.wait(self.interval)


def run_measured(argv, stdout=subprocess.DEVNULL, stderr=None, shell=False, poll=True, interval=0.02,
                 workdir=None):
    """Run argv (a list, or a string with shell=True); return a dict with wall_s, code, main_kib
    (GNU time %M, or None without GNU time), tree_rss_kib, tree_pss_kib (None when poll=False),
    procs (most processes seen at once) and stderr_tail."""
    if shell:
        argv = ["/bin/sh", "-c", argv]
    use_time = os.access(TIME_BIN, os.X_OK)
    rss_path = None
    if use_time:
        import tempfile
        fd, rss_path = tempfile.mkstemp(prefix="bench-rss-", dir=workdir)
        os.close(fd)
        argv = [TIME_BIN, "-f", "%M", "-o", rss_path] + list(argv)
    err_to = stderr if stderr is not None else subprocess.PIPE
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err_to, close_fds=True)
    sampler = None
    if poll:
        sampler = TreeSampler(proc.pid, interval, skip_root=use_time)
        sampler.start()
    err = b""
    if err_to is subprocess.PIPE:
        err = proc.stderr.read()  # small: the commands run with --quiet
    code = proc.wait()
    wall = time.perf_counter() - t0
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    main_kib = None
    if rss_path:
        try:
            with open(rss_path) as f:
                nums = [ln.strip() for ln in f if ln.strip().isdigit()]
            main_kib = int(nums[-1]) if nums else None
        finally:
            os.unlink(rss_path)
    res = {"wall_s": wall, "code": code, "main_kib": main_kib,
           "stderr_tail": err.decode("utf-8", "replace")[-600:]}
    if sampler is not None:
        # The main process's exact peak is a floor for the tree's.
        floor = main_kib or 0
        res.update(tree_rss_kib=max(sampler.max_rss, floor), tree_pss_kib=max(sampler.max_pss, floor),
                   procs=sampler.max_procs, samples=sampler.samples,
                   hwm_sum_kib=sum(sampler.hwm.values()))
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mib(kib):
    return None if kib is None else kib / 1024.0


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def ratio(a, b):
    return "n/a" if a is None or not b else "%.2fx" % (a / b)


def gc_config(root, path):
    with open(path, "w") as f:
        f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
                % json.dumps(root))
    return path


def can_drop_caches():
    return drop_caches() is None


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
