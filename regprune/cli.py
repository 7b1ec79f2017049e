"""The command line: thin wrappers around the library, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, List, Optional

import click
import orjson
import typer

from . import render, report
from .errors import EXIT_DAMAGE, EXIT_INTERRUPTED, EXIT_OK, RegpruneError
from .scan import DEFAULT_WORKERS
from .store_access import Opened, open_store

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Analyze and prune the filesystem storage of a Docker/OCI registry, offline.",
)

ROOT = typer.Option(..., "--root", envvar="REGPRUNE_ROOT", metavar="PATH",
                    help="The registry's rootdirectory (or its docker/, docker/registry/, docker/registry/v2/).")
WORKERS = typer.Option(DEFAULT_WORKERS, "--workers", min=1, max=256,
                       help="Listings, stats and reads kept in flight at once.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")
JSON = typer.Option(False, "--json", help="Print one JSON object (keys and lists sorted).")


def emit_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n")


@contextmanager
def progress_bar(quiet: bool, desc: str, unit: str) -> Iterator[Optional[object]]:
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, leave=False, unit_scale=True)
    try:
        yield bar
    finally:
        bar.close()


def scan_store(root: str, workers: int, quiet: bool, read_all_links: bool = False) -> Opened:
    with progress_bar(quiet, "scanning", " blobs") as bar:
        def progress(what: str, n: int) -> None:
            if what == "blobs":
                bar.update(n)  # type: ignore[attr-defined]

        return open_store(root, workers=workers, progress=progress if bar else None,
                          read_all_links=read_all_links)


@app.command()
def du(
    root: str = ROOT,
    json: bool = JSON,
    sort: str = typer.Option("bytes", "--sort", help="Order repositories by bytes, exclusive or name."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the first N repositories."),
    workers: int = WORKERS,
    quiet: bool = QUIET,
) -> None:
    """What uses the disk: totals, garbage, and one row per repository."""
    if sort not in report.SORTS:
        raise click.BadParameter(f"{sort!r} is not one of {', '.join(report.SORTS)}", param_hint="--sort")
    opened = scan_store(root, workers, quiet)
    result = report.du(opened.graph, sort=sort, top=top)
    if json:
        emit_json(result)
    else:
        typer.echo(render.du(result, opened.rootdirectory))


@app.command("ls")
def ls_(
    repositories: Optional[List[str]] = typer.Argument(None, metavar="[REPO]...", help="Repositories to list."),
    root: str = ROOT,
    json: bool = JSON,
    workers: int = WORKERS,
    quiet: bool = QUIET,
) -> None:
    """One row per image: tags, digest, kind, size, exclusive size, created, pushed."""
    opened = scan_store(root, workers, quiet)
    result = report.ls(opened.graph, opened.storage, repositories or (), workers)
    if json:
        emit_json(result)
    else:
        typer.echo(render.ls(result))


@app.command()
def check(
    root: str = ROOT,
    json: bool = JSON,
    verify_digests: bool = typer.Option(False, "--verify-digests",
                                        help="Hash every blob; report content and size mismatches."),
    workers: int = WORKERS,
    quiet: bool = QUIET,
) -> None:
    """Every finding, by severity. Exit 3 when something is damaged."""
    from .verify import verify_blobs

    opened = scan_store(root, workers, quiet, read_all_links=True)
    extra = []
    if verify_digests:
        total = opened.graph.size_of(opened.graph.store.stored_ids())
        with progress_bar(quiet, "hashing", "B") as bar:
            if bar is not None:
                bar.total = total  # type: ignore[attr-defined]
            extra = verify_blobs(opened.storage, opened.graph, workers,
                                 (lambda _w, n: bar.update(n)) if bar else None)  # type: ignore[attr-defined]
    result = report.check(opened.graph, extra)
    if json:
        emit_json(result)
    else:
        typer.echo(render.check(result))
    if result["damaged"]:
        raise typer.Exit(EXIT_DAMAGE)


def main(argv: Optional[List[str]] = None) -> None:
    """The one boundary where errors turn into messages and exit codes."""
    try:
        code = app(args=argv, prog_name="regprune", standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RegpruneError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
