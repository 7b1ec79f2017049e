#!/usr/bin/env python3
"""Generate a synthetic registry tree in the filesystem layout of the Docker registry
("distribution" 2.8) for benchmarking regprune.

    python benchmarks/gen_tree.py OUT_ROOT [--repos 2000] [--tags 10] [--layers 5]
        [--base-layers 50] [--untagged-fraction 0.1] [--index-fraction 0.05]
        [--orphans 20] [--age-days 30] [--layer-bytes 24-3072] [--jobs N] [--seed 1]

The tree is written under OUT_ROOT/docker/registry/v2/ (OUT_ROOT is the registry's
`rootdirectory`). Every blob's `data` really hashes to its digest, every manifest is one
the registry's garbage collector parses, and the tree is reproducible for a given seed
and set of parameters (file contents and paths; mtimes are relative to the current time).

What is written:
- a pool of --base-layers shared base layers; each image's first 1-3 layers come from it;
- per repository --tags tags; a fraction --index-fraction of them point at a multi-arch
  index (OCI image index or Docker manifest list) with 2 platform children, which are
  untagged revisions of the same repository; the others point at a Docker schema2 or
  OCI image manifest;
- a fraction --untagged-fraction of the tags were "overwritten": the previous manifest
  (and, for an index, its children) stays a revision and is in the tag's index history;
- _layers links for every config and layer the repository's manifests use;
- --orphans blobs no manifest references (all that `garbage-collect --dry-run` without
  -m should find eligible).

Only the standard library is used; repositories are generated in parallel worker
processes, each with its own deterministic random generator.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PLATFORMS = [
    ("amd64", None),
    ("arm64", "v8"),
    ("arm", "v7"),
    ("ppc64le", None),
    ("s390x", None),
]

# Base timestamp for the `created` fields (2023-01-01T00:00:00Z); fixed for reproducibility.
CREATED_BASE = 1672531200

WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


# --------------------------------------------------------------------------- low level


class Writer:
    """Writes blobs and link files, counting what it writes."""

    def __init__(self, v2, mtime):
        self.v2 = v2
        self.blobs_dir = os.path.join(v2, "blobs", "sha256")
        self.mtime = mtime  # None: leave mtimes alone
        self.files = 0
        self.dirs = 0
        self.blobs = 0
        self.blob_bytes = 0
        self.file_bytes = 0

    def write_file(self, path, data):
        fd = os.open(path, WRITE_FLAGS, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        self.files += 1
        self.file_bytes += len(data)

    def mkdir(self, path):
        try:
            os.mkdir(path)
            self.dirs += 1
        except FileExistsError:
            pass

    def makedirs(self, path):
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path:
            self.makedirs(parent)
        self.mkdir(path)

    def put_blob(self, data):
        """Store `data` as a blob; return its hex digest."""
        hexd = hashlib.sha256(data).hexdigest()
        d = os.path.join(self.blobs_dir, hexd[:2], hexd)
        try:
            os.mkdir(d)
        except FileExistsError:
            return hexd  # same content already stored (e.g. identical tiny blob)
        self.dirs += 1
        p = os.path.join(d, "data")
        self.write_file(p, data)
        if self.mtime is not None:
            os.utime(p, (self.mtime, self.mtime))
            os.utime(d, (self.mtime, self.mtime))
        self.blobs += 1
        self.blob_bytes += len(data)
        return hexd

    def link(self, parent, hexd):
        """Write `parent/<hexd>/link` (parent must exist)."""
        d = os.path.join(parent, hexd)
        self.mkdir(d)
        self.write_file(os.path.join(d, "link"), ("sha256:" + hexd).encode("ascii"))


DEFAULT_LAYER_BYTES = (24, 3072)


def layer_size(rng, bounds=DEFAULT_LAYER_BYTES):
    # Log-uniform between 24 bytes and 3 KiB by default: sizes spread over two orders of
    # magnitude but every blob stays within one filesystem block. --layer-bytes MIN-MAX
    # changes the bounds (same distribution, one rng.random() either way).
    if tuple(bounds) == DEFAULT_LAYER_BYTES:
        return int(24 * (2 ** (rng.random() * 7)))  # the original formula, bit for bit
    lo, hi = bounds
    return int(lo * ((hi / lo) ** rng.random()))


def parse_bytes(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(s[-1:], 1)
    if s[-1:] in "KMG":
        s = s[:-1]
    return int(float(s) * mult)


def parse_layer_bytes(spec):
    """'MIN-MAX' with optional K/M/G suffixes (powers of 1024), e.g. '16K-16M'."""
    import argparse
    try:
        lo, hi = (parse_bytes(x) for x in spec.split("-", 1))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError("expected MIN-MAX, e.g. 24-3072 or 16K-16M") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError("need 1 <= MIN <= MAX")
    return (lo, hi)


def rand_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def dump_json(obj):
    # The docker CLI / buildkit push indented JSON; 3 spaces is what `docker push` uses.
    return json.dumps(obj, indent=3).encode("utf-8")


def iso_time(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --------------------------------------------------------------------------- repository


class RepoGen:
    def __init__(self, w, name, rng, args, base_pool):
        self.w = w
        self.name = name
        self.rng = rng
        self.args = args
        self.base_pool = base_pool  # list of (hex, size)
        self.dir = os.path.join(w.v2, "repositories", *name.split("/"))
        self.layers_dir = os.path.join(self.dir, "_layers", "sha256")
        self.revs_dir = os.path.join(self.dir, "_manifests", "revisions", "sha256")
        self.tags_dir = os.path.join(self.dir, "_manifests", "tags")
        self.layer_links = set()
        self.revisions = set()
        self.manifests = 0
        self.tags = 0
        self.untagged = 0

    # -- blobs that belong to an image

    def new_layer(self):
        data = rand_bytes(self.rng, layer_size(self.rng, self.args.layer_bytes))
        return self.w.put_blob(data), len(data)

    def image(self, oci, arch="amd64", variant=None):
        """Write config, layers and manifest of one image; return (hex, size, mediaType)."""
        rng = self.rng
        nlayers = max(1, self.args.layers)
        nbase = 0
        if self.base_pool and nlayers > 1:
            nbase = rng.randint(1, min(3, nlayers - 1, len(self.base_pool)))
        layers = rng.sample(self.base_pool, nbase) if nbase else []
        for _ in range(nlayers - nbase):
            layers.append(self.new_layer())
        created = CREATED_BASE + rng.randrange(0, 3 * 365 * 86400)
        config = {
            "architecture": arch,
            "os": "linux",
            "created": iso_time(created),
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"org.example.repo": self.name, "org.example.build": str(rng.randrange(10 ** 6))},
            },
            "rootfs": {
                "type": "layers",
                # diff_ids are digests of the uncompressed layers; any stable value will do.
                "diff_ids": ["sha256:" + hashlib.sha256(("diff" + h).encode()).hexdigest() for h, _ in layers],
            },
            "history": [{"created": iso_time(created), "created_by": "/bin/sh -c #(nop) layer %d" % i}
                        for i in range(len(layers))],
        }
        if variant:
            config["variant"] = variant
        cdata = dump_json(config)
        chex = self.w.put_blob(cdata)
        cmt = MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG
        lmt = MT_OCI_LAYER if oci else MT_DOCKER_LAYER
        mt = MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": cmt, "size": len(cdata), "digest": "sha256:" + chex},
            "layers": [{"mediaType": lmt, "size": size, "digest": "sha256:" + h} for h, size in layers],
        }
        mdata = dump_json(manifest)
        mhex = self.w.put_blob(mdata)
        self.layer_links.add(chex)
        for h, _ in layers:
            self.layer_links.add(h)
        self.add_revision(mhex)
        return mhex, len(mdata), mt

    def index(self, oci):
        """A multi-arch index with 2 platform children; return (hex, size, mediaType)."""
        plats = self.rng.sample(PLATFORMS, 2)
        entries = []
        for arch, variant in plats:
            chex, csize, cmt = self.image(oci, arch, variant)
            plat = {"architecture": arch, "os": "linux"}
            if variant:
                plat["variant"] = variant
            entries.append({"mediaType": cmt, "size": csize, "digest": "sha256:" + chex, "platform": plat})
        mt = MT_OCI_INDEX if oci else MT_DOCKER_LIST
        idx = {"schemaVersion": 2, "mediaType": mt, "manifests": entries}
        data = dump_json(idx)
        h = self.w.put_blob(data)
        self.add_revision(h)
        return h, len(data), mt

    def add_revision(self, hexd):
        if hexd not in self.revisions:
            self.revisions.add(hexd)
            self.manifests += 1

    def some_manifest(self, is_index):
        oci = self.rng.random() < 0.4
        if is_index:
            return self.index(oci)[0]
        return self.image(oci)[0]

    # -- the repository

    def tag_names(self, n):
        rng = self.rng
        names = ["latest"]
        seen = set(names)
        while len(names) < n:
            kind = rng.random()
            if kind < 0.6:
                t = "v%d.%d.%d" % (rng.randrange(4), rng.randrange(20), rng.randrange(30))
            elif kind < 0.75:
                t = "%d.%d" % (rng.randrange(10), rng.randrange(10))
            elif kind < 0.9:
                t = "build-%d" % rng.randrange(100000)
            else:
                t = rng.choice(["stable", "dev", "edge", "nightly", "main", "release", "rc", "beta"]) + \
                    "_%d" % rng.randrange(1000)
            if t not in seen:
                seen.add(t)
                names.append(t)
        return names[:n]

    def generate(self):
        w = self.w
        w.makedirs(self.layers_dir)
        w.makedirs(self.revs_dir)
        w.makedirs(self.tags_dir)
        args = self.args
        for tag in self.tag_names(args.tags):
            history = []
            if self.rng.random() < args.untagged_fraction:
                # The tag used to point somewhere else: that manifest stays as a revision.
                old = self.some_manifest(self.rng.random() < args.index_fraction)
                history.append(old)
                self.untagged += 1
            cur = self.some_manifest(self.rng.random() < args.index_fraction)
            history.append(cur)
            tdir = os.path.join(self.tags_dir, tag)
            w.mkdir(tdir)
            w.mkdir(os.path.join(tdir, "current"))
            w.write_file(os.path.join(tdir, "current", "link"), ("sha256:" + cur).encode("ascii"))
            idir = os.path.join(tdir, "index", "sha256")
            w.mkdir(os.path.join(tdir, "index"))
            w.mkdir(idir)
            for h in history:
                w.link(idir, h)
            self.tags += 1
        for h in sorted(self.revisions):
            w.link(self.revs_dir, h)
        for h in sorted(self.layer_links):
            w.link(self.layers_dir, h)


# --------------------------------------------------------------------------- workers

_G = {}


def _init_worker(v2, mtime, args, base_pool):
    _G["v2"] = v2
    _G["mtime"] = mtime
    _G["args"] = args
    _G["base_pool"] = base_pool


def _gen_chunk(items):
    w = Writer(_G["v2"], _G["mtime"])
    args = _G["args"]
    stats = {"repos": 0, "tags": 0, "manifests": 0, "untagged_tags": 0}
    for idx, name in items:
        rng = random.Random("%d:repo:%d" % (args.seed, idx))
        rg = RepoGen(w, name, rng, args, _G["base_pool"])
        rg.generate()
        stats["repos"] += 1
        stats["tags"] += rg.tags
        stats["manifests"] += rg.manifests
        stats["untagged_tags"] += rg.untagged
    stats.update(files=w.files, dirs=w.dirs, blobs=w.blobs, blob_bytes=w.blob_bytes, file_bytes=w.file_bytes)
    return stats


# --------------------------------------------------------------------------- names


def repo_names(n, rng):
    """Unique repository names, nested 1-3 levels, some nested inside other repositories."""
    names = []
    seen = set()
    norgs = max(1, n // 25)
    seps = ["-", "_", ".", "__", ""]
    words = ["app", "svc", "web", "api", "worker", "db", "cache", "proxy", "tool", "ui", "job", "base"]
    i = 0
    while len(names) < n:
        i += 1
        r = rng.random()
        org = "org%d" % rng.randrange(norgs)
        leaf = "%s%s%d" % (rng.choice(words), rng.choice(seps), i)
        if r < 0.25:
            name = leaf
        elif r < 0.3:
            name = org  # a repository that other repositories are nested in
        elif r < 0.65:
            name = f"{org}/{leaf}"
        elif r < 0.68:
            name = "%s/team%d" % (org, rng.randrange(8))  # also a parent of depth-3 names
        else:
            name = "%s/team%d/%s" % (org, rng.randrange(8), leaf)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a synthetic Docker registry 2.8 filesystem tree.")
    ap.add_argument("out_root", help="registry rootdirectory to create (tree goes to OUT_ROOT/docker/registry/v2)")
    ap.add_argument("--repos", type=int, default=2000, help="number of repositories (default 2000)")
    ap.add_argument("--tags", type=int, default=10, help="tags per repository (default 10)")
    ap.add_argument("--layers", type=int, default=5, help="layers per image (default 5)")
    ap.add_argument("--base-layers", type=int, default=50,
                    help="size of the shared base-layer pool; each image's first 1-3 layers come from it (default 50)")
    ap.add_argument("--untagged-fraction", type=float, default=0.1,
                    help="fraction of tags that were overwritten, leaving an untagged revision (default 0.1)")
    ap.add_argument("--index-fraction", type=float, default=0.05,
                    help="fraction of manifests that are multi-arch indexes with 2 children (default 0.05)")
    ap.add_argument("--orphans", type=int, default=20, help="blobs referenced by nothing (default 20)")
    ap.add_argument("--age-days", type=float, default=30.0,
                    help="set blob mtimes this many days in the past, so grace windows do not apply "
                         "(default 30; negative: leave mtimes at write time)")
    ap.add_argument("--layer-bytes", type=parse_layer_bytes, default=DEFAULT_LAYER_BYTES, metavar="MIN-MAX",
                    help="layer sizes, log-uniform between MIN and MAX bytes, K/M/G suffixes allowed "
                         "(default 24-3072); shared base layers are 4x bigger")
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: number of CPUs)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--force", action="store_true", help="write even if OUT_ROOT/docker already exists")
    args = ap.parse_args(argv)

    t0 = time.time()
    v2 = os.path.join(os.path.abspath(args.out_root), "docker", "registry", "v2")
    if os.path.exists(os.path.join(args.out_root, "docker")) and not args.force:
        ap.error("{} already exists (use --force, or remove it first)".format(os.path.join(args.out_root, "docker")))
    mtime = None if args.age_days < 0 else time.time() - args.age_days * 86400

    w = Writer(v2, mtime)
    w.makedirs(os.path.join(v2, "repositories"))
    w.makedirs(w.blobs_dir)
    for i in range(256):
        w.mkdir(os.path.join(w.blobs_dir, f"{i:02x}"))

    rng = random.Random("%d:global" % args.seed)
    base_pool = []
    for _ in range(args.base_layers):
        data = rand_bytes(rng, layer_size(rng, args.layer_bytes) * 4)  # base layers are a bit bigger
        base_pool.append((w.put_blob(data), len(data)))
    orphans = []
    for i in range(args.orphans):
        data = rand_bytes(rng, layer_size(rng, args.layer_bytes)) if i % 4 else dump_json({"orphan": i, "seed": args.seed})
        orphans.append(w.put_blob(data))
    names = repo_names(args.repos, rng)

    jobs = args.jobs or os.cpu_count() or 1
    items = list(enumerate(names))
    # Small chunks, interleaved, so the workers finish together.
    chunk = max(1, min(50, len(items) // (jobs * 8) or 1))
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    totals = {"repos": 0, "tags": 0, "manifests": 0, "untagged_tags": 0,
              "files": w.files, "dirs": w.dirs, "blobs": w.blobs, "blob_bytes": w.blob_bytes,
              "file_bytes": w.file_bytes}
    if jobs <= 1 or len(chunks) <= 1:
        _init_worker(v2, mtime, args, base_pool)
        results = map(_gen_chunk, chunks)
        pool = None
    else:
        ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else multiprocessing
        pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(v2, mtime, args, base_pool))
        results = pool.imap_unordered(_gen_chunk, chunks)
    for st in results:
        for k, v in st.items():
            totals[k] += v
    if pool is not None:
        pool.close()
        pool.join()

    elapsed = time.time() - t0
    summary = dict(totals)
    summary.update(root=os.path.abspath(args.out_root), base_layers=len(base_pool), orphans=len(orphans),
                   seconds=round(elapsed, 2))
    print(f"wrote {v2}")
    print("  repositories   %8d" % summary["repos"])
    print("  tags           %8d  (%d overwritten, leaving untagged revisions)" % (summary["tags"], summary["untagged_tags"]))
    print("  manifests      %8d  (revisions, incl. index children and untagged)" % summary["manifests"])
    print("  blobs          %8d  (%d base layers, %d orphans)" % (summary["blobs"], len(base_pool), len(orphans)))
    print("  files          %8d" % summary["files"])
    print("  directories    %8d" % summary["dirs"])
    print("  blob bytes     %8d  (%.1f MiB)" % (summary["blob_bytes"], summary["blob_bytes"] / 1048576.0))
    print("  file bytes     %8d  (%.1f MiB, blobs + links)" % (summary["file_bytes"], summary["file_bytes"] / 1048576.0))
    print("  time           %8.1f s  (%d workers)" % (elapsed, jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
