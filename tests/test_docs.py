"""The README and the user guide are executed: every Python snippet runs, every command line parses.

Per page, the ```python blocks run in order in one namespace, in a temporary working folder; ```sh
lines that call ``invdiff`` are parsed by the command's own parser, ``python scripts/X.py`` must name
a script that exists, ``make X`` a Makefile target; ```toml blocks load as benchmark configurations.
Relative links must point at files that exist. The README stays a user's page of at most 10 KB, and its
headline table is the one ``scripts/headline.py`` derives from the results page.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "docs" / "design.md"]


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def _ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


def test_the_guide_has_a_page_per_command_and_package():
    names = {p.stem for p in (ROOT / "docs" / "guide").glob("*.md")}
    assert {"demo", "reconstruct", "benchmark", "train-prior", "measurement", "operators", "datasets", "priors",
            "samplers", "problems", "active", "metrics"} <= names


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=_ids([p for p in PAGES if blocks(p, "python")]))
def test_python_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__snippet__"}
    for k, code in enumerate(blocks(page, "python")):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"{page.name}[python {k}]", "exec"), namespace)


def _command_lines(page: Path) -> list[str]:
    lines = []
    for block in blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_command_lines_parse(page):
    from invdiff.cli import build_parser

    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for line in _command_lines(page):
        words = shlex.split(line)
        if words[0] == "invdiff":
            build_parser().parse_args(words[1:])
            configs = [w for w in words if w.endswith(".toml")]
            assert all((ROOT / c).is_file() for c in configs), (page.name, line)
        elif words[0] == "python" and words[1].startswith("scripts/"):
            assert (ROOT / words[1]).is_file(), (page.name, line)
        elif words[0] == "make":
            assert words[1] in targets, (page.name, line)
        else:
            pytest.fail(f"{page.name}: a command line the test does not know how to check: {line}")


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "toml")], ids=_ids([p for p in PAGES if blocks(p, "toml")]))
def test_toml_snippets_are_valid_configurations(page, tmp_path):
    from invdiff.benchmark.config import load_config

    for k, text in enumerate(blocks(page, "toml")):
        (tmp_path / f"{k}.toml").write_text(text)
        assert load_config(tmp_path / f"{k}.toml").cells()


@pytest.mark.parametrize("page", PAGES + sorted((ROOT / "docs" / "results").rglob("*.md")),
                         ids=_ids(PAGES + sorted((ROOT / "docs" / "results").rglob("*.md"))))
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if not re.match(r"[a-z]+:", target):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


def test_readme_is_a_users_page():
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024


@pytest.mark.skipif(not (ROOT / "docs" / "results" / "image-tasks" / "results.csv").is_file(),
                    reason="the image-task results page has not been written")
def test_readme_headline_is_the_results_page():
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "headline.py"), "--check"], env=os.environ)
    assert check.returncode == 0, "README headline differs from docs/results/image-tasks: run scripts/headline.py"
