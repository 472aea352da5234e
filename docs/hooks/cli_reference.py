"""MkDocs hook: the command-line reference, generated from the parsers at build time.

`docs/cli.md` holds the marker `<!-- cli-reference -->`; this hook replaces it with
one section per command (and per `prep` source), each with the `--help` text that
`keras-focal` itself prints. The page can therefore never disagree with the
parsers: a renamed option changes the page at the next build.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
# argparse wraps help at the terminal's width; a fixed width (that of the page's code column) gives the same page
# on every machine.
HELP_WIDTH = "80"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps its sub-parsers on this private attribute only
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _sections(parser: argparse.ArgumentParser, path: list[str], level: int) -> list[str]:
    title = " ".join(path)
    anchor = "-".join(path)
    blocks = [f"{'#' * level} `{title}` {{ #{anchor} }}", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, child in _subcommands(parser):
        blocks += _sections(child, [*path, name], min(level + 1, 4))
    return blocks


def cli_reference() -> str:
    """The Markdown of every command's `--help`, from `keras_focal.cli.build_parser()`."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        from keras_focal.cli import build_parser

        return "\n".join(_sections(build_parser(), ["keras-focal"], 2))
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
