"""The scan split over forked processes: what goes wrong in a shard reaches the caller."""

import multiprocessing
import os

import pytest
from synth import Reg

import regprune.scan
from regprune.scan import ScanOptions, scan
from regprune.storage import LocalStorage


@pytest.fixture
def root(tmp_path):
    reg = Reg(tmp_path)
    for n in range(6):
        reg.image(f"r{n}", tag="v1", layers=[b"base", b"layer %d" % n])
    return str(reg.root)


def broken_in(monkeypatch, shard, action):
    """Make the scan of one shard (i, n) call `action` instead of scanning."""
    run = regprune.scan._Scan.run

    def patched(self, *args):
        if self.options.shard == shard:
            action()
        return run(self, *args)

    monkeypatch.setattr(regprune.scan._Scan, "run", patched)


def raise_(exc):
    raise exc


def test_an_error_in_a_shard_process_is_raised_here(root, monkeypatch):
    broken_in(monkeypatch, (1, 2), lambda: raise_(ValueError("shard one broke")))
    with pytest.raises(ValueError, match="shard one broke"):
        scan(LocalStorage(root), root, ScanOptions(processes=2))


def test_a_shard_process_that_dies_is_an_error_not_a_partial_store(root, monkeypatch):
    broken_in(monkeypatch, (2, 3), lambda: os._exit(9))
    with pytest.raises(RuntimeError, match="scan process 2 died without a result"):
        scan(LocalStorage(root), root, ScanOptions(processes=3))


def test_an_error_in_this_process_stops_the_shard_processes(root, monkeypatch):
    broken_in(monkeypatch, (0, 2), lambda: raise_(KeyError("main shard broke")))
    with pytest.raises(KeyError, match="main shard broke"):
        scan(LocalStorage(root), root, ScanOptions(processes=2))
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("regprune-scan")]
