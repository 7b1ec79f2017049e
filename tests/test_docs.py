"""The documentation is checked against the code: every command, option, finding code, exit code and JSON
key the CLI has must be documented, and the README must open with its two commands.

The CLI's commands and options come from the click objects typer builds (what `--help` shows), finding
codes from `regprune.findings.CODES`, exit codes from `regprune/errors.py`, and JSON keys from running
the commands on (a copy of) the committed demo registry.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest
import typer

import regprune.cli
import regprune.errors
from regprune.findings import CODES, SEVERITIES

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
DEMO = REPO / "fixtures" / "demo"

#: Options of other programs that the docs mention (the registry's own GC, python, docker).
FOREIGN_OPTIONS = {"--delete-untagged", "--version", "--rm", "--name"}
# options of the benchmark scripts, which docs/performance.md quotes
FOREIGN_OPTIONS |= {"--runs", "--cold", "--warmup", "--cmd", "--only", "--repos", "--tags", "--layers",
                    "--sizes", "--layer-bytes", "--budget-min", "--reuse"}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def all_docs() -> str:
    return "\n".join([readme()] + [p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))])


def commands() -> Dict[str, object]:
    """Every command by the words that run it: a group's commands as `group command` (`trash list`)."""
    group = typer.main.get_command(regprune.cli.app)
    out: Dict[str, object] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        inner = getattr(command, "commands", None)
        if inner:
            out.update({f"{name} {sub}": c for sub, c in inner.items()})
        else:
            out[name] = command
    return out


def options(command: object) -> List[str]:
    """Every option string of a command (long and short forms), as `--help` lists them."""
    out = []
    for param in command.params:  # type: ignore[attr-defined]
        if param.param_type_name == "option":
            out += list(param.opts) + list(param.secondary_opts)
    return out


def mentions(text: str, option: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text) is not None


def section(text: str, heading: str) -> str:
    """The text under a markdown heading (any level), up to the next heading of the same or a higher
    level; `#` lines inside fenced code blocks are not headings."""
    lines = text.splitlines(keepends=True)
    fenced = False
    start, level, out = None, 0, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#+) (.*?)[ \t]*$", line)
        if start is None:
            if match and match.group(2) == heading:
                start, level = True, len(match.group(1))
            continue
        if match and len(match.group(1)) <= level:
            break
        out.append(line)
    assert start, f"README has no heading {heading!r}"
    return "".join(out)


def code_blocks(text: str) -> List[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


# ------------------------------------------------------------------------------------ the first block
def test_readme_starts_with_exactly_two_commands():
    text = readme()
    assert text.startswith("```"), "README.md must start with the code block of the two first commands"
    first = code_blocks(text)[0]
    lines = [line.strip() for line in first.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) == 2, lines
    install, tests = lines
    assert "pip install" in install and "regprune du" in install and "fixtures/demo" in install
    assert ".ci/run" in tests


def test_ci_script_is_there_and_runs_the_suite():
    script = REPO / ".ci" / "run"
    assert script.is_file() and os.access(script, os.X_OK)
    assert "pytest" in script.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------- commands, options
def test_every_command_is_in_the_readme():
    text = readme()
    assert commands(), "no commands found on the typer app"
    for name in commands():
        assert f"regprune {name}" in text, f"README.md does not show `regprune {name}`"
        assert re.search(r"^### `regprune " + re.escape(name) + "`", text, re.MULTILINE), (
            f"README.md has no section `### `regprune {name}``")


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_is_documented(name):
    text = all_docs()
    missing = [opt for opt in options(commands()[name]) if not mentions(text, opt)]
    assert not missing, f"`regprune {name}`: options not in README.md or docs/*.md: {missing}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_each_command_section_names_its_long_options(name):
    """The README section of a command names all its long options (`--root` is documented once for all)."""
    body = section(readme(), f"`regprune {name}`")
    wanted = [o for o in options(commands()[name]) if o.startswith("--") and o != "--root"]
    missing = [o for o in wanted if not mentions(body, o)]
    assert not missing, f"README section of `regprune {name}` does not name {missing}"


def test_documented_options_exist():
    """No stale option in the docs: every `--option` they mention belongs to some regprune command."""
    known = {opt for cmd in commands().values() for opt in options(cmd)} | {"--help"} | FOREIGN_OPTIONS
    found = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", all_docs()))
    assert found - known == set()


def test_root_forms_and_environment_variable():
    text = section(readme(), "Finding the store: `--root`")
    for form in ("`docker/`", "`docker/registry/`", "`docker/registry/v2/`", "rootdirectory", "REGPRUNE_ROOT"):
        assert form in text
    root = next(p for p in commands()["du"].params if "--root" in p.opts)  # type: ignore[attr-defined]
    assert "REGPRUNE_ROOT" in (root.envvar if isinstance(root.envvar, (list, tuple)) else [root.envvar])


# --------------------------------------------------------------------------------------------- findings
def finding_rows() -> Dict[str, str]:
    """code -> severity, from the table rows of docs/findings.md."""
    text = (DOCS / "findings.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `([a-z0-9.-]+)` \| (\w+) \|", text, re.MULTILINE))


def test_every_finding_code_is_documented_with_its_severity():
    rows = finding_rows()
    for code, (severity, _) in CODES.items():
        assert code in rows, f"docs/findings.md has no row for `{code}`"
        assert rows[code] == severity, f"docs/findings.md says `{code}` is {rows[code]}, the code says {severity}"


def test_no_stale_finding_code():
    assert set(finding_rows()) - set(CODES) == set()
    assert set(finding_rows().values()) <= set(SEVERITIES)


# ------------------------------------------------------------------------------------------ exit codes
def exit_codes() -> Dict[str, int]:
    source = (REPO / "regprune" / "errors.py").read_text(encoding="utf-8")
    found = {name: int(value) for name, value in re.findall(r"^(EXIT_[A-Z_]+) = (\d+)$", source, re.MULTILINE)}
    assert found
    for name, value in found.items():
        assert getattr(regprune.errors, name) == value
    return found


def test_every_exit_code_is_in_the_readme_table():
    table = section(readme(), "Exit codes")
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == set(exit_codes().values())


# ---------------------------------------------------------------------------------------- JSON formats
def keys(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from keys(inner)


def run_json(capsys, argv: List[str]) -> dict:
    import orjson

    with pytest.raises(SystemExit) as exit_info:
        regprune.cli.main(argv)
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, 3), out
    return orjson.loads(out)


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs-demo") / "demo"
    shutil.copytree(DEMO, root, symlinks=True)
    return root


def test_json_keys_are_documented(demo_copy, capsys):
    root = str(demo_copy)
    seen: Set[str] = set()
    seen |= set(keys(run_json(capsys, ["du", "--root", root, "--json", "--quiet"])))
    seen |= set(keys(run_json(capsys, ["ls", "--root", root, "--json", "--quiet"])))
    seen |= set(keys(run_json(capsys, ["check", "--root", root, "--json", "--quiet"])))
    destructive = ["--root", root, "--json", "--quiet", "--grace", "0s", "--force"]
    seen |= set(keys(run_json(capsys, ["gc", "--dry-run"] + destructive)))
    # a real run (on the copy) adds the result's keys, and gives `history` something to list
    seen |= set(keys(run_json(capsys, ["gc", "--yes"] + destructive)))
    # a --trash run adds its own, and gives `trash list` and du's `trash` something to show
    seen |= set(keys(run_json(capsys, ["delete", "team/web", "--trash", "--yes"] + destructive)))
    trashed = run_json(capsys, ["trash", "list", "--root", root, "--json"])
    assert trashed["runs"], "the --trash run should be in the trash"
    seen |= set(keys(trashed))
    seen |= set(keys(run_json(capsys, ["du", "--root", root, "--json", "--quiet"])))
    history = run_json(capsys, ["history", "--root", root, "--json"])
    assert len(history["runs"]) == 2, "the real gc and delete runs should be in the history"
    seen |= set(keys(history))
    text = section(readme(), "JSON formats")
    missing = sorted(k for k in seen if f'"{k}"' not in text)
    assert not missing, f"JSON keys not in the README's JSON formats: {missing}"


def test_finding_json_keys_are_documented():
    from regprune.findings import Finding

    sample = Finding("link-empty", "docker/registry/v2/x/link", "", "detail").to_json()
    text = section(readme(), "JSON formats")
    assert [k for k in sample if f'"{k}"' not in text] == []
