"""Helpers for the deletion tests: run the CLI, read a store independently of regprune, compare a plan
with what a run removed, and inject crashes into `LocalStorage`.

`Tree` reads a registry tree with its own few lines of parsing (no regprune code), so the tests judge
regprune with a second opinion: which blobs and links each remaining revision needs, which revisions a
tag reaches, which blobs only a removed image used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
V2 = "docker/registry/v2"
REPOS = V2 + "/repositories"
BLOBS = V2 + "/blobs/sha256"
OWN = "regprune"
OLD = time.time() - 30 * 86400  # older than any grace window
OLD_STARTEDAT = "2020-01-01T00:00:00Z"

_DIGEST = re.compile(rb"sha256:[0-9a-f]{64}\Z")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")


# -------------------------------------------------------------------------------- the CLI, the registry
def run_cli(root, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m regprune ARGS --root ROOT`, without a terminal (stdin is /dev/null)."""
    return subprocess.run([sys.executable, "-m", "regprune", *args, "--root", str(root)], cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def pulls(root, good: Iterable[Tuple[str, str]], bad: Iterable[Tuple[str, str]]) -> None:
    """Serve `root` with the real registry and pull with skopeo (which checks every digest): every `good`
    (repo, tag or digest) must pull, no `bad` one may."""
    from concurrent.futures import ThreadPoolExecutor

    from fixtures import registry_kit as kit

    good, bad = sorted(set(good)), sorted(set(bad))
    with kit.RegistryServer(root) as server, ThreadPoolExecutor(4) as pool:
        ok_good = list(pool.map(lambda ref: server.pull_ok(*ref), good))
        ok_bad = list(pool.map(lambda ref: server.pull_ok(*ref), bad))
    assert [ref for ref, ok in zip(good, ok_good) if not ok] == [], "kept references no longer pull"
    assert [ref for ref, ok in zip(bad, ok_bad) if ok] == [], "removed references still pull"


def age_tree(root) -> None:
    """Make every upload and file old: `startedat` says 2020, every mtime is 30 days back."""
    for startedat in Path(root, REPOS).rglob("_uploads/*/startedat"):
        startedat.write_bytes(OLD_STARTEDAT.encode())
    from fixtures.tree import set_tree_mtime

    set_tree_mtime(root, OLD)


# ------------------------------------------------------------------------------- an independent reader
def _read_link(path: Path) -> Optional[str]:
    """The digest a link names, or None when it is missing or not exactly `sha256:<64 hex>`."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        body = path.read_bytes()
    except OSError:
        return None
    return body.decode() if _DIGEST.match(body) else None


def _dirs(path: Path) -> List[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


class Repo:
    def __init__(self, name: str) -> None:
        self.name = name
        self.tags: Dict[str, str] = {}  # tag -> current digest
        self.history: Dict[str, Set[str]] = {}  # tag -> digests under index/
        self.revisions: Set[str] = set()
        self.layer_links: Dict[str, Optional[str]] = {}  # "alg:hex" -> the sha256 its body names
        self.uploads: Set[str] = set()


class Tree:
    """What a registry tree holds, read without regprune."""

    def __init__(self, root) -> None:
        self.root = Path(root)
        self.blobs: Dict[str, int] = {}
        for prefix in _dirs(self.root / BLOBS):
            for hexpart in _dirs(self.root / BLOBS / prefix):
                data = self.root / BLOBS / prefix / hexpart / "data"
                if not data.is_symlink() and data.is_file():
                    self.blobs[f"sha256:{hexpart}"] = data.stat().st_size
        self.repos: Dict[str, Repo] = {}
        self._walk(self.root / REPOS, [])
        self.docs: Dict[str, Optional[dict]] = {}
        for repo in self.repos.values():
            for rev in repo.revisions:
                self.docs.setdefault(rev, self._doc(rev))

    def _walk(self, path: Path, parts: List[str]) -> None:
        names = _dirs(path)
        if parts and ("_layers" in names or "_manifests" in names):
            self.repos["/".join(parts)] = self._repo("/".join(parts), path)
        for name in names:
            if not name.startswith("_") and _COMPONENT.match(name):
                self._walk(path / name, parts + [name])

    def _repo(self, name: str, path: Path) -> Repo:
        repo = Repo(name)
        tags = path / "_manifests" / "tags"
        for tag in _dirs(tags):
            current = _read_link(tags / tag / "current" / "link")
            if current is not None:
                repo.tags[tag] = current
            index = tags / tag / "index" / "sha256"
            repo.history[tag] = {f"sha256:{h}" for h in _dirs(index) if _read_link(index / h / "link")}
        revisions = path / "_manifests" / "revisions" / "sha256"
        for h in _dirs(revisions):
            if _read_link(revisions / h / "link") == f"sha256:{h}":
                repo.revisions.add(f"sha256:{h}")
        for alg in _dirs(path / "_layers"):
            for h in _dirs(path / "_layers" / alg):
                link = path / "_layers" / alg / h / "link"
                if link.is_file():
                    repo.layer_links[f"{alg}:{h}"] = _read_link(link)
        repo.uploads = set(_dirs(path / "_uploads"))
        return repo

    def _doc(self, digest: str) -> Optional[dict]:
        if digest not in self.blobs:
            return None
        data = (self.root / BLOBS / digest[7:9] / digest[7:] / "data").read_bytes()
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------------------------- the graph
    def children(self, digest: str) -> List[str]:
        doc = self.docs.get(digest) or {}
        return [d["digest"] for d in doc.get("manifests") or () if isinstance(d, dict)]

    def subject(self, digest: str) -> Optional[str]:
        doc = self.docs.get(digest) or {}
        return doc["subject"].get("digest") if isinstance(doc.get("subject"), dict) else None

    def blob_refs(self, digest: str) -> List[str]:
        """Config and layers (layers with `urls` are foreign: not stored, not needed)."""
        doc = self.docs.get(digest) or {}
        refs = [doc["config"]["digest"]] if isinstance(doc.get("config"), dict) else []
        refs += [d["digest"] for d in doc.get("layers") or () if isinstance(d, dict) and not d.get("urls")]
        refs += [d["blobSum"] for d in doc.get("fsLayers") or () if isinstance(d, dict)]
        return refs

    def needs(self, repo: str, rev: str) -> Tuple[Set[str], Set[str]]:
        """(blobs, `_layers` link names) that pulling `repo@rev` needs, children aside."""
        blobs, links = {rev}, set()
        for ref in self.blob_refs(rev):
            links.add(ref)
            if ref.startswith("sha256:"):
                blobs.add(ref)
            else:  # named by sha512/sha384: the repository's alias link says which blob
                target = self.repos[repo].layer_links.get(ref)
                blobs.add(target or ref)
        for child in self.children(rev):
            blobs.add(child)
        return blobs, links

    def needed_blobs(self, skip: Iterable[Tuple[str, str]] = ()) -> Set[str]:
        skipped = set(skip)
        out: Set[str] = set()
        for name, repo in self.repos.items():
            for rev in repo.revisions:
                if (name, rev) not in skipped:
                    out |= self.needs(name, rev)[0]
        return out

    def reach(self, repo: str, roots: Iterable[str], exclude: Iterable[str] = ()) -> Set[str]:
        """Revisions reachable from `roots` through index children and referrers, never through `exclude`."""
        r = self.repos[repo]
        referrers: Dict[str, List[str]] = {}
        for rev in r.revisions:
            subject = self.subject(rev)
            if subject:
                referrers.setdefault(subject, []).append(rev)
        seen: Set[str] = set(exclude)
        stack = [x for x in roots if x in r.revisions]
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            stack += [c for c in self.children(rev) if c in r.revisions]
            stack += referrers.get(rev, [])
        return seen - set(exclude)

    def tagged_reach(self, repo: str, without_tags: Iterable[str] = ()) -> Set[str]:
        gone = set(without_tags)
        r = self.repos[repo]
        return self.reach(repo, [d for t, d in r.tags.items() if t not in gone])

    def removal_for_tags(self, repo: str, tags: Iterable[str], keep_listed: bool = True) -> Set[str]:
        """Revisions that deleting `tags` removes: what they reach (children, referrers) and no other tag
        reaches. With `keep_listed`, also none that a revision staying anyway (an untagged index outside
        the deletion) lists as a child: removing it would break that index."""
        return self.removal(repo, tags, (), keep_listed)

    def removal(self, repo: str, tags: Iterable[str], revisions: Iterable[str], keep_listed: bool = True) -> Set[str]:
        """What deleting `tags` and `revisions` of `repo` removes (see `removal_for_tags`); the explicit
        `revisions` are never kept through themselves."""
        tags, explicit = set(tags), set(revisions)
        r = self.repos[repo]
        gone_tags = tags | {t for t, d in r.tags.items() if d in explicit}
        closure = self.reach(repo, [r.tags[t] for t in gone_tags] + sorted(explicit))
        roots = [d for t, d in r.tags.items() if t not in gone_tags]
        if keep_listed:
            roots += sorted(r.revisions - closure)
        return closure - self.reach(repo, roots, exclude=explicit)

    def listed_by_staying(self, repo: str, tags: Iterable[str], revisions: Iterable[str]) -> Set[str]:
        """Explicit `revisions` that a revision staying after the deletion lists as a child (a refusal)."""
        tags, explicit = set(tags), set(revisions)
        r = self.repos[repo]
        gone_tags = tags | {t for t, d in r.tags.items() if d in explicit}
        closure = self.reach(repo, [r.tags[t] for t in gone_tags] + sorted(explicit))
        roots = [d for t, d in r.tags.items() if t not in gone_tags] + sorted(r.revisions - closure)
        keep = self.reach(repo, roots, exclude=explicit)
        return {rev for rev in explicit if any(rev in self.children(p) for p in keep)}

    def untagged(self, repo: str) -> Set[str]:
        return self.repos[repo].revisions - self.tagged_reach(repo)

    def exclusive(self, removed: Iterable[Tuple[str, str]]) -> Set[str]:
        """Stored blobs that the removed revisions need and no other revision of any repository does."""
        removed = set(removed)
        theirs: Set[str] = set()
        for repo, rev in removed:
            theirs |= self.needs(repo, rev)[0]
        return (theirs - self.needed_blobs(skip=removed)) & set(self.blobs)

    def orphans(self) -> Set[str]:
        return set(self.blobs) - self.needed_blobs()

    def problems(self) -> List[str]:
        """Everything that would stop a remaining tag or revision from being pulled."""
        out = []
        for name, repo in sorted(self.repos.items()):
            for tag, current in sorted(repo.tags.items()):
                if current not in repo.revisions:
                    out.append(f"{name}:{tag}: current {current} is not a revision")
            for rev in sorted(repo.revisions):
                if rev not in self.blobs:
                    out.append(f"{name}@{rev}: manifest blob missing")
                    continue
                if self.docs.get(rev) is None:
                    continue  # unparseable: nobody knows what it needs
                blobs, links = self.needs(name, rev)
                out += [f"{name}@{rev}: needs blob {b}" for b in sorted(blobs - set(self.blobs))]
                out += [f"{name}@{rev}: needs _layers link {x}" for x in sorted(links - set(repo.layer_links))]
                out += [f"{name}@{rev}: child {c} missing" for c in self.children(rev) if c not in repo.revisions]
        return out

    def tag_set(self) -> Set[Tuple[str, str]]:
        return {(name, tag) for name, r in self.repos.items() for tag in r.tags}

    def revision_set(self) -> Set[Tuple[str, str]]:
        return {(name, rev) for name, r in self.repos.items() for rev in r.revisions}


# ------------------------------------------------------------------------------ plans and tree diffs
KINDS = ("tags", "tag_history", "manifests", "layer_links", "blobs", "uploads", "repositories")


def plan_sets(doc: dict) -> Dict[str, set]:
    """The removals a plan (or a run's result) lists, as sets comparable with `removed_by_run`."""
    return {
        "tags": {(t["repo"], t["tag"]) for t in doc["tags"]},
        "tag_history": {(h["repo"], h["tag"], h["digest"]) for h in doc.get("tag_history", ())},
        "manifests": {(m["repo"], m["digest"]) for m in doc["manifests"]},
        "layer_links": {(x["repo"], x["digest"]) for x in doc["layer_links"]},
        "blobs": {b["digest"] for b in doc["blobs"]},
        "uploads": {(u["repo"], u["id"]) for u in doc["uploads"]},
        "repositories": set(doc["repositories"]),
    }


def assert_sorted(doc: dict) -> None:
    """The JSON contract: every list sorted (repository, tag, digest)."""
    keys = {
        "tags": lambda t: (t["repo"], t["tag"]),
        "tag_history": lambda h: (h["repo"], h["tag"], h["digest"]),
        "manifests": lambda m: (m["repo"], m["digest"]),
        "layer_links": lambda x: (x["repo"], x["digest"]),
        "blobs": lambda b: b["digest"],
        "uploads": lambda u: (u["repo"], u["id"]),
        "repositories": lambda r: r,
    }
    for kind, key in keys.items():
        items = doc.get(kind, [])
        assert items == sorted(items, key=key), f"{kind} not sorted: {items}"


def _split_repo(rel: str) -> Optional[Tuple[str, List[str]]]:
    """(repository, the path below it starting at its reserved `_` entry) of a path under repositories/."""
    if not rel.startswith(REPOS + "/"):
        return None
    parts = rel[len(REPOS) + 1:].split("/")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return "/".join(parts[:i]), parts[i:]
    return "/".join(parts), []


def removed_by_run(before: dict, after: dict) -> Dict[str, set]:
    """What a run removed, read from two `tree_snapshot`s, in the plan's terms. Raises when the run
    touched anything that none of those removals explains (a file changed, a stray path removed, something
    added outside regprune's own folder)."""
    gone = sorted(set(before) - set(after))
    out: Dict[str, set] = {k: set() for k in KINDS}
    for rel in gone:
        split = _split_repo(rel)
        if split is not None:
            repo, rest = split
            if rest[:2] == ["_manifests", "tags"] and len(rest) == 3:
                out["tags"].add((repo, rest[2]))
            elif rest[:2] == ["_manifests", "revisions"] and len(rest) == 5 and rest[4] == "link":
                out["manifests"].add((repo, f"sha256:{rest[3]}"))
            elif rest[:1] == ["_layers"] and len(rest) == 4 and rest[3] == "link":
                out["layer_links"].add((repo, f"{rest[1]}:{rest[2]}"))
            elif rest[:1] == ["_uploads"] and len(rest) == 2:
                out["uploads"].add((repo, rest[1]))
            elif rest in (["_manifests"], ["_layers"]):
                out["repositories"].add(repo)
        elif rel.startswith(BLOBS + "/"):
            parts = rel[len(BLOBS) + 1:].split("/")
            if len(parts) == 2:
                out["blobs"].add(f"sha256:{parts[1]}")
    for rel in gone:
        split = _split_repo(rel)
        if split is None:
            continue
        repo, rest = split
        if (len(rest) == 7 and rest[:2] == ["_manifests", "tags"] and rest[3] == "index" and rest[6] == "link"
                and (repo, rest[2]) not in out["tags"]):
            out["tag_history"].add((repo, rest[2], f"sha256:{rest[5]}"))

    def explained(rel: str) -> bool:
        split = _split_repo(rel)
        if split is not None:
            repo, rest = split
            if repo in out["repositories"] or any(r.startswith(repo + "/") for r in out["repositories"]):
                return True  # its reserved directories, and the emptied directories of its name
            if rest[:2] == ["_manifests", "tags"] and len(rest) >= 3 and (repo, rest[2]) in out["tags"]:
                return True
            if rest[:2] == ["_manifests", "revisions"] and len(rest) in (4, 5):
                return (repo, f"sha256:{rest[3]}") in out["manifests"]
            if rest[:1] == ["_layers"] and len(rest) in (3, 4):
                return (repo, f"{rest[1]}:{rest[2]}") in out["layer_links"]
            if rest[:1] == ["_uploads"] and len(rest) >= 2:
                return (repo, rest[1]) in out["uploads"]
            if len(rest) in (6, 7) and rest[:2] == ["_manifests", "tags"] and rest[3] == "index":
                return (repo, rest[2], f"sha256:{rest[5]}") in out["tag_history"]
            return False
        if rel.startswith(BLOBS + "/"):
            parts = rel[len(BLOBS) + 1:].split("/")
            return len(parts) >= 2 and f"sha256:{parts[1]}" in out["blobs"]
        return False

    stray = [rel for rel in gone if not explained(rel)]
    added = [rel for rel in set(after) - set(before) if rel != OWN and not rel.startswith(OWN + "/")]
    changed = [rel for rel in set(before) & set(after)
               if before[rel] != after[rel] and before[rel].kind != "dir" and not rel.startswith(OWN + "/")]
    assert not stray, f"removed without a plan entry explaining it: {stray}"
    assert not added, f"added: {sorted(added)}"
    assert not changed, f"changed: {sorted(changed)}"
    return out


def comparable(snapshot: dict) -> dict:
    """A snapshot without directory mtimes and without regprune's own folder (journal, lock)."""
    out = {}
    for rel, entry in snapshot.items():
        if rel in (".", OWN) or rel.startswith(OWN + "/"):
            continue
        out[rel] = (entry.kind, None, None, None, entry.mode) if entry.kind == "dir" else tuple(entry)
    return out


def docker_part(snapshot: dict) -> dict:
    """The entries under docker/ (the registry's part of the rootdirectory), exactly."""
    return {rel: e for rel, e in snapshot.items() if rel == "docker" or rel.startswith("docker/")}


# ---------------------------------------------------------------------------------- crash injection
class Crash(Exception):
    """Injected in place of the k-th removal."""


#: The `LocalStorage` methods that change the store, counted by the crash injectors.
MUTATIONS = ("remove_file", "remove_empty_dir", "rename")


@contextmanager
def crash_at(k: Optional[int]) -> Iterator[dict]:
    """Count `LocalStorage.remove_file`, `remove_empty_dir` (what `remove_tree` is made of) and `rename`
    (what a `--trash` run and a restore do) calls and raise `Crash` instead of performing the k-th and any
    later one (k None: only count). Yields the counter."""
    from regprune.storage import LocalStorage

    counter = {"n": 0, "what": None}
    lock = threading.Lock()
    originals = {name: getattr(LocalStorage, name) for name in MUTATIONS}

    def wrap(name):
        orig = originals[name]

        def mutation(self, rel, *more):
            with lock:
                counter["n"] += 1
                hit = k is not None and counter["n"] >= k
                if counter["n"] == k:
                    counter["what"] = f"{name}({rel})"
            if hit:  # the k-th, and whatever another thread still tries after it: a dead run does nothing
                raise Crash(f"injected at mutation {k}: {name}({rel})")
            return orig(self, rel, *more)

        return mutation

    for name in originals:
        setattr(LocalStorage, name, wrap(name))
    try:
        yield counter
    finally:
        for name, orig in originals.items():
            setattr(LocalStorage, name, orig)


#: Defines `patch(k)`: from then on, the k-th removal (or rename) through LocalStorage is `os._exit(137)`.
KILL_PATCH = r"""
import os, threading
from regprune.storage import LocalStorage

def patch(k):
    count = [0]
    lock = threading.Lock()
    def wrap(orig):
        def mutation(self, rel, *more):
            with lock:
                count[0] += 1
                if count[0] == k:
                    os._exit(137)
            return orig(self, rel, *more)
        return mutation
    LocalStorage.remove_file = wrap(LocalStorage.remove_file)
    LocalStorage.remove_empty_dir = wrap(LocalStorage.remove_empty_dir)
    LocalStorage.rename = wrap(LocalStorage.rename)
"""

#: Runs jobs, each in a forked child of one fresh interpreter (regprune imported once): `kill` jobs call
#: `patch(k)` (a hard kill at the k-th removal: no finally, no flush, the lock released by the kernel only),
#: then `regprune.cli.main(argv)`; `run` jobs call it unpatched.
#: Prints one exit status per job, as JSON.
DRIVER = KILL_PATCH + r"""
import json, sys
from regprune import cli, deletion, execute, journal, plan, refs, render, report, safety  # noqa: F401

import contextlib
import regprune.scan
regprune.scan.default_processes = lambda: 1  # no scan helpers forked from each child: same scan, faster here
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
    try:  # warm up (typer imports lazily while parsing): every child starts from here
        cli.main(["history", "--root", "/nonexistent/regprune-warm-up"])
    except SystemExit:
        pass


codes = []
for kind, k, argv, log in json.load(open(sys.argv[1])):
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1); os.dup2(fd, 2)
        code = 1
        try:
            if kind == "kill":
                patch(k)
            cli.main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback; traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
print(json.dumps(codes))
"""

#: The single-run form: `python -c KILL K ARGV...` kills itself at the K-th removal.
KILL = KILL_PATCH + r"""
import sys
from regprune import cli
patch(int(sys.argv[1]))
cli.main(sys.argv[2:])
"""


def run_jobs(jobs: List[Tuple[str, Optional[int], List[str]]], workdir: Path, procs: int = 2) -> List[Tuple[int, str]]:
    """Run `(kind, k, argv)` jobs through `DRIVER` (`procs` drivers side by side); returns (exit status,
    output) per job."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = [[kind, k, argv, str(workdir / f"job-{i}.log")] for i, (kind, k, argv) in enumerate(jobs)]
    chunks = [spec[i::procs] for i in range(procs)]
    running = []
    for n, chunk in enumerate(chunks):
        jobs_file = workdir / f"jobs-{n}.json"
        jobs_file.write_text(json.dumps(chunk))
        running.append(subprocess.Popen([sys.executable, "-c", DRIVER, str(jobs_file)], cwd=REPO_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        stdin=subprocess.DEVNULL))
    codes: Dict[str, int] = {}
    for chunk, proc in zip(chunks, running):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        codes.update(zip((log for *_, log in chunk), json.loads(out.strip().splitlines()[-1])))
    return [(codes[log], Path(log).read_text()) for *_, log in spec]


def kill_at(root, k: int, *args: str) -> subprocess.CompletedProcess:
    """One hard-killed CLI run in its own interpreter: `os._exit(137)` at the k-th removal."""
    return subprocess.run([sys.executable, "-c", KILL, str(k), *args, "--root", str(root)], cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
