"""The documentation cannot rot: the site builds with warnings as errors, the README's and the pages' Python
blocks run, every `keras-focal` command line they show is accepted by the real parser, and the README's links
point at files that exist."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# A fenced block, with the HTML comment (if any) on the line before it: `<!-- docs-test: run -->` or
# `<!-- docs-test: skip (why) -->`.
_BLOCK = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<language>[\w-]*)[^\n]*\n(?P<code>.*?)```", re.S)


def _blocks(language: str) -> list[tuple[pathlib.Path, int, str | None, str]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(m for m in _BLOCK.finditer(page.read_text()) if m["language"] == language):
            found.append((page, number, match["marker"], match["code"]))
    return found


def _name(page: pathlib.Path, number: int) -> str:
    return f"{page.relative_to(ROOT)}#{number}"


PYTHON_BLOCKS = _blocks("python")


@pytest.mark.parametrize(
    "page, number, marker", [(p, n, m) for p, n, m, _ in PYTHON_BLOCKS], ids=[_name(p, n) for p, n, _, _ in PYTHON_BLOCKS]
)
def test_every_python_block_is_marked_run_or_skip_with_a_reason(page, number, marker):
    assert marker == "run" or re.fullmatch(r"skip \(.+\)", marker or ""), (
        f"{_name(page, number)}: precede the block with <!-- docs-test: run --> or <!-- docs-test: skip (why) -->"
    )


RUNNABLE = [(p, n, code) for p, n, m, code in PYTHON_BLOCKS if m == "run"]


@pytest.mark.backend_agnostic  # the README's and the guides' examples run on TensorFlow, JAX and PyTorch alike
@pytest.mark.parametrize("page, number, code", RUNNABLE, ids=[_name(p, n) for p, n, _ in RUNNABLE])
def test_python_block_runs(page, number, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (a saved model)
    exec(compile(code, _name(page, number), "exec"), {"__name__": "__docs__"})


def test_the_documented_python_blocks_are_the_many_not_the_few():
    # The README's two examples and the guides' run; only blocks that need a trained comparison are skipped.
    assert len(RUNNABLE) >= 7
    assert len(PYTHON_BLOCKS) - len(RUNNABLE) <= 3


def _command_lines() -> list[tuple[str, str]]:
    lines = []
    for page, number, _, code in _blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith("keras-focal"):
                lines.append((_name(page, number), command))
    return lines


COMMAND_LINES = _command_lines()


def _tokens(command: str) -> list[str]:
    # Optional parts shown in brackets and elided options ("...") are left out; the rest must parse as written.
    command = re.sub(r"\[[^\[\]]*\]", " ", command)
    return [token for token in shlex.split(command)[1:] if token != "..."]


@pytest.mark.parametrize("where, command", COMMAND_LINES, ids=[f"{w}:{c[:60]}" for w, c in COMMAND_LINES])
def test_documented_command_line_parses(where, command):
    from keras_focal.cli import build_parser

    try:
        build_parser().parse_args(_tokens(command))
    except SystemExit as exit:
        pytest.fail(f"{where}: `{command}` is refused by the parser (exit {exit.code})")


def test_the_command_lines_are_found():
    assert len(COMMAND_LINES) >= 40
    assert any("predict" in command for _, command in COMMAND_LINES)


def test_readme_links_point_at_files():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", readme)
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing


def test_readme_stays_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    # The history of the work goes in the CHANGELOG, not in the front page.
    assert not re.search(r"\bissue \d+|this round|development machine", readme, re.I)


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    site = tmp_path / "site"
    cli_page = (site / "cli" / "index.html").read_text()
    # The command-line reference is generated from the parsers: every command and prep source is there.
    for command in ("keras-focal predict", "keras-focal prep camvid", "--output-format", "keras-focal stability"):
        assert command in cli_page
    api_page = (site / "api" / "losses" / "index.html").read_text()
    assert "DualFocalLoss" in api_page and "dual_focal_terms" in api_page


def test_every_command_line_option_says_what_it_is():
    # The command-line reference is generated from the parsers: an option without help is a blank line there.
    import argparse

    from keras_focal.cli import build_parser

    def without_help(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from without_help(child, [*path, name])
            elif action.help is None:
                yield " ".join([*path, *(action.option_strings or [action.dest])])

    assert list(without_help(build_parser(), ["keras-focal"])) == []
