"""The command line: thin wrappers around the library, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Tuple

import orjson
import typer

try:  # typer >= 0.20 (Python >= 3.11) bundles its own click; older ones (what a NAS installs) use click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - exercised on older Pythons
    from click.exceptions import ClickException  # type: ignore[no-redef]

from . import render, report
from .errors import EXIT_DAMAGE, EXIT_INTERRUPTED, EXIT_IO, EXIT_OK, RegpruneError
from .scan import DEFAULT_WORKERS
from .storage import StorageError
from .store_access import Opened, open_store

if TYPE_CHECKING:  # pragma: no cover
    from .execute import Outcome
    from .graph import Graph
    from .plan import DeletionPlan, Selection

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Analyze and prune the filesystem storage of a Docker/OCI registry, offline.",
)

ROOT = typer.Option(..., "--root", envvar="REGPRUNE_ROOT", metavar="PATH",
                    help="The registry's rootdirectory (or its docker/, docker/registry/, docker/registry/v2/).")
WORKERS = typer.Option(DEFAULT_WORKERS, "--workers", min=1, max=256,
                       help="The most listings, stats and reads in flight at once (reached while they wait on I/O).")
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


def scan_store(root: str, workers: int, quiet: bool, read_all_links: bool = False,
               tag_history: bool = False) -> Opened:
    with progress_bar(quiet, "scanning", " blobs") as bar:
        def progress(what: str, n: int) -> None:
            if what == "blobs":
                bar.update(n)  # type: ignore[attr-defined]

        return open_store(root, workers=workers, progress=progress if bar else None,
                          read_all_links=read_all_links, tag_history=tag_history, stat_layer_links=tag_history)


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
        raise typer.BadParameter(f"{sort!r} is not one of {', '.join(report.SORTS)}", param_hint="--sort")
    from .trash import usage

    opened = scan_store(root, workers, quiet)
    result = report.du(opened.graph, sort=sort, top=top, trash=usage(opened.storage))
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


# ------------------------------------------------------------------------------------------ deleting
DRY_RUN = typer.Option(False, "--dry-run", help="Plan and list what would go; change nothing.")
YES = typer.Option(False, "--yes", "-y", help="Do it without asking (needed when not on a terminal).")
GRACE = typer.Option("1h", "--grace", metavar="DURATION",
                     help="Keep blobs and untagged manifests changed more recently than this.")
FORCE = typer.Option(False, "--force",
                     help="Run although a registry process or a very recent upload suggests activity.")
IGNORE_UNREADABLE = typer.Option(False, "--ignore-unreadable",
                                 help="Delete blobs although some manifest cannot be parsed.")


TRASH = typer.Option(False, "--trash",
                     help="Move what goes into regprune/trash/<run id> instead of deleting it: "
                          "`regprune trash restore` undoes the run, `regprune trash empty` frees the space.")


def _ask(question: str, yes: bool, act: str = "delete for real") -> None:
    from .errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"not a terminal: add --yes to {act}")
    if not typer.confirm(question, default=False):
        raise typer.Exit(EXIT_OK)


def _confirm(the_plan: DeletionPlan, yes: bool, trash: bool = False) -> None:
    size = render.size(the_plan.bytes_freed)
    _ask(f"Move this to the trash ({size}, freed only when emptied)?" if trash else f"Delete this, freeing {size}?",
         yes)


#: What a command may add to the plan it shows: (extra JSON keys, text before the plan, text after it).
Explain = Callable[["Opened", "DeletionPlan"], Tuple[dict, str, str]]


def _destructive(root: str, command: str, select: Callable[[Graph], Selection], dry_run: bool, json: bool,
                 yes: bool, grace: str, force: bool, ignore_unreadable: bool, workers: int, quiet: bool,
                 explain: Optional[Explain] = None, trash: bool = False) -> None:
    from . import deletion
    from . import trash as trash_mod
    from .refs import parse_duration
    from .safety import Overrides

    grace_seconds = parse_duration(grace, "--grace")
    with progress_bar(quiet, "scanning", " blobs") as bar:
        def progress(what: str, n: int) -> None:
            if what == "blobs":
                bar.update(n)  # type: ignore[attr-defined]

        ctx = deletion.session(root, workers=workers, progress=progress if bar else None, lock=not dry_run,
                               light=True)
        opened = ctx.__enter__()
    try:
        # a dry run writes nothing: a registry at work (or a fresh upload) cannot be harmed by planning
        the_plan = deletion.plan(opened, select(opened.graph), command, grace_seconds,
                                 Overrides(force=force or dry_run, ignore_unreadable=ignore_unreadable))
        if trash:
            trash_mod.refuse_if_other_filesystem(opened.storage, create=not dry_run)
        extra, before, after = explain(opened, the_plan) if explain is not None else ({}, "", "")
        if trash and not the_plan.is_empty():
            after += TRASH_NOTE
        doc = dict(the_plan.to_json(dry_run=dry_run), trash=trash, **extra)
        if dry_run or the_plan.is_empty():
            if json:
                emit_json(doc)
            else:
                typer.echo(before + render.plan(doc, f"DRY RUN: {command}" if dry_run else "nothing to delete")
                           + after)
            return
        if not json:
            typer.echo(before + render.plan(doc, f"PLAN: {command}") + after)
        _confirm(the_plan, yes, trash)
        with progress_bar(quiet, "moving to the trash" if trash else "deleting", " steps") as bar:
            outcome = deletion.execute(opened, the_plan, sys.argv, workers=workers,
                                       on_progress=(lambda _p, n: bar.update(n)) if bar else None, trash=trash)
        _report_outcome(the_plan, outcome, json, extra)
    finally:
        ctx.__exit__(None, None, None)


TRASH_NOTE = ("\n--trash: nothing is freed until `regprune trash empty`; `regprune trash restore` puts it all "
              "back")


def _report_outcome(the_plan: DeletionPlan, outcome: Outcome, json: bool, extra: Optional[dict] = None) -> None:
    run_id = outcome.trash_run
    doc = dict(the_plan.to_json(dry_run=False), trash=run_id is not None, **(extra or {}))
    doc["bytes_freed"] = outcome.bytes_freed
    doc["skipped"] = [{"path": p, "why": w} for p, w in outcome.skipped]
    if run_id is not None:
        doc["trash_run"] = run_id
    if json:
        emit_json(doc)
    elif run_id is not None:
        typer.echo(f"moved {render.size(outcome.bytes_freed)} to the trash ({run_id}); "
                   f"`regprune trash restore {run_id}` undoes it, `regprune trash empty {run_id}` frees the space")
    else:
        typer.echo(f"freed {render.size(outcome.bytes_freed)}")
        for path, why in outcome.skipped:
            typer.echo(f"skipped {path}: {why}")
    sys.stderr.write(render.RESTART_REMINDER + "\n")


@app.command()
def delete(
    refs: List[str] = typer.Argument(..., metavar="REF...",
                                     help="repo:tag (wildcards * ?), repo@sha256:<hex>, or repo."),
    root: str = ROOT, dry_run: bool = DRY_RUN, json: bool = JSON, yes: bool = YES, grace: str = GRACE,
    force: bool = FORCE, ignore_unreadable: bool = IGNORE_UNREADABLE, workers: int = WORKERS, quiet: bool = QUIET,
    trash: bool = TRASH,
) -> None:
    """Delete tags, manifests or whole repositories, and every blob only they needed."""
    from .refs import select

    _destructive(root, "delete " + " ".join(refs), lambda g: select(g, refs), dry_run, json, yes, grace, force,
                 ignore_unreadable, workers, quiet, trash=trash)


@app.command()
def untagged(
    repositories: Optional[List[str]] = typer.Argument(None, metavar="[REPO]...",
                                                       help="Repositories to clean (default: all)."),
    root: str = ROOT, dry_run: bool = DRY_RUN, json: bool = JSON, yes: bool = YES, grace: str = GRACE,
    force: bool = FORCE, ignore_unreadable: bool = IGNORE_UNREADABLE, workers: int = WORKERS, quiet: bool = QUIET,
    trash: bool = TRASH,
) -> None:
    """Delete manifests no tag reaches (children of tagged indexes stay) and what only they needed."""
    from .plan import Selection
    from .refs import select_repositories

    names = repositories or []
    _destructive(root, " ".join(["untagged"] + names), lambda g: Selection(untagged=select_repositories(g, names)),
                 dry_run, json, yes, grace, force, ignore_unreadable, workers, quiet, trash=trash)


@app.command()
def prune(
    patterns: Optional[List[str]] = typer.Argument(None, metavar="[REPO_PATTERN]...",
                                                   help="Repositories to prune: names or patterns (team/*, "
                                                        "** crosses /); default all."),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", metavar="N", min=0,
                                            help="Keep the N most recent candidate tags of each repository."),
    keep: Optional[List[str]] = typer.Option(None, "--keep", metavar="REGEX",
                                             help="Always keep tags matching this (not counted in N); repeatable."),
    only: Optional[str] = typer.Option(None, "--only", metavar="REGEX",
                                       help="Candidate tags: those matching this (default all); others stay."),
    older_than: Optional[str] = typer.Option(None, "--older-than", metavar="DURATION",
                                             help="Drop a candidate only if it is also older than this."),
    order: str = typer.Option("pushed", "--order", metavar="pushed|created",
                              help="Recency: when the tag was last pushed, or the image config's created."),
    untagged_too: bool = typer.Option(False, "--untagged",
                                      help="Also delete the untagged manifests of these repositories."),
    root: str = ROOT, dry_run: bool = DRY_RUN, json: bool = JSON, yes: bool = YES, grace: str = GRACE,
    force: bool = FORCE, ignore_unreadable: bool = IGNORE_UNREADABLE, workers: int = WORKERS, quiet: bool = QUIET,
    trash: bool = TRASH,
) -> None:
    """Apply a retention policy: per repository, keep the tags it names and the most recent ones; delete the
    rest and every blob only they needed."""
    import time

    from . import retention
    from .configs import read_created
    from .storage import LocalStorage

    policy = retention.make_policy(keep_last, keep or (), only, older_than, order)
    names = patterns or []
    now = time.time()
    found: dict = {}

    def select(graph: Graph) -> Selection:
        storage = LocalStorage(graph.store.rootdirectory)  # configs are read only with --order created
        found["retention"] = retention.evaluate(
            graph, names, policy, now, untagged=untagged_too,
            read_created=lambda ids: read_created(storage, graph.store, ids, workers))
        return found["retention"].selection()

    def explain(opened: Opened, the_plan: DeletionPlan) -> Tuple[dict, str, str]:
        extra = retention.report(found["retention"], opened.graph, the_plan)
        return (extra,) + retention.render_text(found["retention"], extra)

    command = " ".join(["prune"] + names + [policy.describe()] + ["--untagged"] * untagged_too)
    _destructive(root, command, select, dry_run, json, yes, grace, force, ignore_unreadable, workers, quiet,
                 explain=explain, trash=trash)


@app.command()
def gc(
    uploads_older_than: str = typer.Option("168h", "--uploads-older-than", metavar="DURATION",
                                           help="Remove uploads started longer ago than this."),
    keep_empty_repos: bool = typer.Option(False, "--keep-empty-repos",
                                          help="Keep repositories left with neither tags nor manifests."),
    root: str = ROOT, dry_run: bool = DRY_RUN, json: bool = JSON, yes: bool = YES, grace: str = GRACE,
    force: bool = FORCE, ignore_unreadable: bool = IGNORE_UNREADABLE, workers: int = WORKERS, quiet: bool = QUIET,
    trash: bool = TRASH,
) -> None:
    """Remove orphan blobs, unneeded layer links, stale tag history, old uploads and empty repositories."""
    from .plan import Selection
    from .refs import parse_duration

    age = parse_duration(uploads_older_than, "--uploads-older-than")
    _destructive(root, "gc", lambda g: Selection(gc=True, uploads_older_than=age, keep_empty_repos=keep_empty_repos),
                 dry_run, json, yes, grace, force, ignore_unreadable, workers, quiet, trash=trash)


@app.command()
def resume(
    root: str = ROOT, json: bool = JSON, yes: bool = YES, force: bool = FORCE,
    ignore_unreadable: bool = IGNORE_UNREADABLE, workers: int = WORKERS, quiet: bool = QUIET,
) -> None:
    """Finish an interrupted run, after checking its plan against the tree as it is now."""
    from . import deletion
    from .safety import Overrides

    with deletion.session(root, workers=workers, lock=True) as opened:
        overrides = Overrides(force=force, ignore_unreadable=ignore_unreadable)
        run, safe, dropped = deletion.pending_resume(opened, overrides)
        if not json:
            typer.echo(render.plan(dict(safe.to_json(dry_run=True), trash=run.trash is not None),
                                   f"RESUME {run.run_id}: {run.command}"))
            if dropped:
                typer.echo(f"{dropped} action(s) of the saved plan are no longer safe and are dropped")
        if not json and run.trash is not None:
            typer.echo(TRASH_NOTE.strip())
        _confirm(safe, yes, run.trash is not None)
        outcome = deletion.resume(opened, run, safe, workers=workers)
        _report_outcome(safe, outcome, json)


@app.command()
def history(root: str = ROOT, json: bool = JSON) -> None:
    """Past destructive runs: when, what, bytes freed."""
    from . import journal
    from .storage import LocalStorage
    from .store_access import locate

    storage = LocalStorage(locate(root))
    runs = [{"id": r.run_id, "created": r.created, "command": r.command, "state": r.state,
             "bytes_freed": r.bytes_freed, "finished": r.finished, "trash": r.trash,
             "tags": len(r.plan.tags), "manifests": len(r.plan.manifests), "blobs": len(r.plan.blobs)}
            for r in journal.all_runs(storage)]
    if json:
        emit_json({"runs": runs})
        return
    rows = [[r["id"], r["created"], r["state"] + (f", {r['trash']}" if r["trash"] else ""), r["command"],
             render.size(r["bytes_freed"])] for r in runs]
    typer.echo("\n".join(render.table(["ID", "STARTED", "STATE", "COMMAND", "FREED"], rows,
                                      [False, False, False, False, True])))


# ------------------------------------------------------------------------------------------- the trash
trash_app = typer.Typer(no_args_is_help=True,
                        help="What --trash runs moved aside: list it, put a run back, or delete it for good.")
app.add_typer(trash_app, name="trash")


def _trash_table(rows: List[dict]) -> str:
    cells = [[r["id"], r["created"], r["command"], str(r["tags"]), str(r["manifests"]), str(r["blobs"]),
              render.size(r["bytes"])] for r in rows]
    return "\n".join(render.table(["ID", "CREATED", "COMMAND", "TAGS", "MANIFESTS", "BLOBS", "SIZE"], cells,
                                  [False, False, False, True, True, True, True]))


@trash_app.command("list")
def trash_list(root: str = ROOT, json: bool = JSON) -> None:
    """One row per run whose trash is neither emptied nor restored: what it removed, and its bytes."""
    from . import trash as trash_mod
    from .storage import LocalStorage
    from .store_access import locate

    rows = [t.to_json() for t in trash_mod.trashed(LocalStorage(locate(root)))]
    if json:
        emit_json({"runs": rows})
    elif not rows:
        typer.echo("the trash is empty")
    else:
        typer.echo(_trash_table(rows))
        typer.echo(f"\n{len(rows)} run(s), {render.size(sum(r['bytes'] for r in rows))}")


@trash_app.command("restore")
def trash_restore(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="The run to put back (`regprune trash list`)."),
    root: str = ROOT, yes: bool = YES,
    force: bool = typer.Option(False, "--force",
                               help="Restore although a later run removed something the restored images need."),
    workers: int = WORKERS,
) -> None:
    """Put back everything a --trash run moved aside, at the same paths, in the reverse order."""
    from . import deletion
    from . import trash as trash_mod

    with deletion.locked(root) as storage:
        run = trash_mod.restorable(storage, run_id)
        deletion.refuse_if_unfinished(storage, restoring_ok=run.run_id)
        trash_mod.refuse_if_not_restorable(storage, run, force)
        typer.echo(f"RESTORE {run.run_id}: {run.command}: {trash_mod.counts(run)}")
        _ask(f"Put back {trash_mod.counts(run)}?", yes, "restore for real")
        trash_mod.restore(storage, run, workers)
    typer.echo(f"restored {run.run_id}")
    sys.stderr.write(render.RESTART_REMINDER + "\n")


@trash_app.command("empty")
def trash_empty(
    run_id: Optional[str] = typer.Argument(None, metavar="[RUN_ID]", help="Only this run (default: every run)."),
    older_than: Optional[str] = typer.Option(None, "--older-than", metavar="DURATION",
                                             help="Only runs made longer ago than this."),
    root: str = ROOT, yes: bool = YES,
) -> None:
    """Delete what --trash runs moved aside, for good, and say how much that freed."""
    from . import deletion
    from . import trash as trash_mod
    from .refs import parse_duration

    age = parse_duration(older_than, "--older-than") if older_than is not None else None
    with deletion.locked(root) as storage:
        deletion.refuse_if_unfinished(storage)
        chosen = trash_mod.select_for_empty(storage, run_id, age)
        if not chosen:
            typer.echo("nothing to empty")
            return
        typer.echo(_trash_table([t.to_json() for t in chosen]))
        total = sum(t.bytes for t in chosen)
        _ask(f"Delete these {len(chosen)} run(s) for good, freeing {render.size(total)}?", yes,
             "empty the trash for real")
        freed = trash_mod.empty(storage, chosen)
    typer.echo(f"freed {render.size(freed)}: {len(chosen)} run(s) emptied")


def main(argv: Optional[List[str]] = None) -> None:
    """The one boundary where errors turn into messages and exit codes."""
    try:
        code = app(args=argv, prog_name="regprune", standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    except ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RegpruneError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(exc.exit_code)
    except StorageError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(EXIT_IO)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
