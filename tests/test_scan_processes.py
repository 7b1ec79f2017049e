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


def test_an_error_in_a_shard_process_is_raised_here(root, monkeypatch):
    run = regprune.scan._Scan.run

    def failing(self, *args):
        if self.options.shard == (1, 2):
            raise ValueError("shard one broke")
        return run(self, *args)

    monkeypatch.setattr(regprune.scan._Scan, "run", failing)
    with pytest.raises(ValueError, match="shard one broke"):
        scan(LocalStorage(root), root, ScanOptions(processes=2))


def test_a_shard_process_that_dies_is_an_error_not_a_partial_store(root, monkeypatch):
    run = regprune.scan._Scan.run

    def dying(self, *args):
        if self.options.shard == (2, 3):
            os._exit(9)
        return run(self, *args)

    monkeypatch.setattr(regprune.scan._Scan, "run", dying)
    with pytest.raises(RuntimeError, match="scan process 2 died without a result"):
        scan(LocalStorage(root), root, ScanOptions(processes=3))


def test_an_error_in_this_process_stops_the_shard_processes(root, monkeypatch):
    run = regprune.scan._Scan.run

    def failing(self, *args):
        if self.options.shard == (0, 2):
            raise KeyError("main shard broke")
        return run(self, *args)

    monkeypatch.setattr(regprune.scan._Scan, "run", failing)
    with pytest.raises(KeyError, match="main shard broke"):
        scan(LocalStorage(root), root, ScanOptions(processes=2))
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("regprune-scan")]
