"""Typed errors, each with the exit code the CLI turns it into (documented in the README).

| code | meaning |
| ---- | ------- |
| 0 | success; `check`: nothing damaged |
| 1 | an unexpected internal error (a bug: please report it) |
| 2 | bad usage: an unknown option value, a reference that does not exist, a real run without `--yes` |
| 3 | `check` found damage; a deletion refused (the message names the reason and the override) |
| 4 | no registry store found at the given path |
| 5 | an I/O error on the store stopped a run (`regprune resume` finishes a deletion once it is fixed) |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DAMAGE = 3
EXIT_NO_STORE = 4
EXIT_IO = 5
EXIT_INTERRUPTED = 130


class RegpruneError(Exception):
    """An error the user can act on; `str()` is one line naming the path and the value."""

    exit_code = EXIT_INTERNAL


class UsageError(RegpruneError):
    exit_code = EXIT_USAGE


class Refused(RegpruneError):
    exit_code = EXIT_DAMAGE


class NoStore(RegpruneError):
    exit_code = EXIT_NO_STORE
