"""Shared pytest fixtures.

Real-registry scenarios (``fixtures/scenarios.py``) are slow to build compared to a unit test, so
``realreg_scenario(name)`` builds each one at most once per session, into a session temporary
directory, and hands out ``(root, expected)``. Those trees are shared: treat them as read-only and
use ``realreg_copy(name)`` before running anything that might write.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `import fixtures` from any working directory


def realreg_available() -> bool:
    """Whether Debian's docker-registry and skopeo are installed (the `realreg` tests need both)."""
    from fixtures import registry_kit as kit

    return bool(shutil.which(kit.REGISTRY_BIN) and shutil.which(kit.SKOPEO_BIN))


@pytest.fixture(scope="session")
def realreg_scenario(tmp_path_factory):
    """``realreg_scenario(name) -> (root, expected)``: the scenario built by the real registry, once
    per session (no GC run, no pull check). Read-only: copy it before writing."""
    if not realreg_available():
        pytest.skip("needs docker-registry and skopeo")
    from fixtures.scenarios import build_scenario

    built: dict = {}
    base = tmp_path_factory.mktemp("realreg-scenarios")

    def get(name: str):
        if name not in built:
            root = base / name
            built[name] = (root, build_scenario(name, root))
        return built[name]

    return get


@pytest.fixture
def realreg_copy(realreg_scenario, tmp_path):
    """``realreg_copy(name) -> (root, expected)``: a private, exact copy of the scenario's tree (links
    kept as links, file mtimes kept) under this test's tmp_path, free to be written."""

    def get(name: str):
        src, expected = realreg_scenario(name)
        dst = tmp_path / f"copy-{name}"
        shutil.copytree(src, dst, symlinks=True)
        return dst, expected

    return get
