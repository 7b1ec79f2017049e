"""The read-only commands leave the tree byte-identical: every path's type, size, mtime and content (links
not followed) are the same after `du`, `ls`, `check` and `check --verify-digests` as before, on a healthy
store and on a damaged, untidy one."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from synth import Reg, sha256
from typer.testing import CliRunner

from regprune.cli import app


def snapshot(root: Path) -> dict:
    """path -> (type, size, mtime_ns, mode, content hash or symlink target), never following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                kind, body = "symlink", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, body = "dir", None
            else:
                kind = "file"
                with open(path, "rb") as f:
                    body = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (kind, st.st_size, st.st_mtime_ns, st.st_mode, body)
    return out


def healthy(root: Path) -> Reg:
    reg = Reg(root)
    img = reg.image("lib/app", tag="v1", layers=[b"base", b"app"], created="2025-01-01T00:00:00Z")
    arm = reg.image("lib/app", layers=[b"base", b"arm"], oci=True)
    reg.index("lib/app", "multi", children=[img, arm])
    reg.artifact("lib/app", img)
    reg.image("tools", tag="latest", layers=[b"base"])
    reg.upload("tools", "u1", b"partial", "2026-01-01T00:00:00Z")
    return reg


def damaged(root: Path) -> Reg:
    reg = healthy(root)
    reg.remove_blob(sha256(b"app"))  # blob-missing
    reg.blob_path(sha256(b"arm")).write_bytes(b"ARM")  # blob-digest-mismatch
    reg.blob(b"orphan")
    reg.write_link(reg.revision_link_path("lib/app", reg.image("lib/app", layers=[b"x"])), b"")  # link-empty
    other = reg.tags["tools"]["latest"]
    mismatched = reg.image("tools", layers=[b"y"])
    reg.write_link(reg.revision_link_path("tools", mismatched), other)  # link-mismatch (check only)
    reg.write(reg.revision_link_path("tools", other).parent / "link.1.tmp", other.encode())
    reg.tag("tools", "half", other)
    (reg.tag_path("tools", "half") / "current" / "link").unlink()
    reg.upload("tools", "u2", b"x", startedat=None)
    (reg.v2 / "repositories" / "@eaDir").mkdir()
    (reg.v2 / "blobs" / "sha256" / "zz").mkdir()
    outside = root.parent / (root.name + "-outside")
    Reg(outside).image("evil", tag="v1", layers=[b"evil"])
    os.symlink(outside / "docker/registry/v2/repositories/evil", reg.repo_path("evil"))
    os.symlink(root / "nowhere", reg.v2 / "repositories" / "dangling")
    (root / "scheduler-state.json").write_text("{}")
    _, d512 = reg.sha512_layer("tools", b"by sha512")
    reg.image("tools", tag="alias", layers=[d512], config=b'{"alias": 1}')
    reg.manifest("tools", b"not json")
    return reg


COMMANDS = [
    ["du"], ["du", "--json", "--sort", "name"], ["ls"], ["ls", "--json", "lib/app"], ["check"],
    ["check", "--json"], ["check", "--verify-digests"], ["check", "--verify-digests", "--json", "--workers", "1"],
]


@pytest.mark.parametrize("make", [healthy, damaged])
def test_read_only_commands_leave_the_tree_identical(tmp_path, make):
    root = tmp_path / "store"
    make(root)
    before = snapshot(root)
    before_parent = sorted(os.listdir(tmp_path))
    runner = CliRunner()
    for command in COMMANDS:
        for given in (root, root / "docker" / "registry"):
            done = runner.invoke(app, [*command, "--root", str(given)])
            assert done.exit_code == (3 if make is damaged and command[0] == "check" else 0), (command, done.output)
            assert snapshot(root) == before, command
    assert sorted(os.listdir(tmp_path)) == before_parent


def test_snapshot_sees_a_change(tmp_path):
    reg = healthy(tmp_path / "store")
    before = snapshot(reg.root)
    layer = sha256(b"base")
    st = os.stat(reg.blob_path(layer))
    os.utime(reg.blob_path(layer), ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert snapshot(reg.root) != before
