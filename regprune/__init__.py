"""regprune: analyze and prune the filesystem storage of a Docker/OCI registry, offline.

The library is usable without the CLI::

    from regprune.store_access import open_store
    graph = open_store("/volume1/docker/registry").graph
"""

from __future__ import annotations

__version__ = "0.1.0"
