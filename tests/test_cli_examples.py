"""Every command's ``--help`` ends with examples, and each example is a command line the parser
accepts: an example that drifted from the options would fail here."""

from __future__ import annotations

import shlex

import pytest

from agent.cli import build_parser, main
from agent.cli.examples import EXAMPLES, commands


def test_every_command_has_examples() -> None:
    assert {path for path, _ in commands(build_parser())} == set(EXAMPLES)


@pytest.mark.parametrize("line", sorted({line for lines in EXAMPLES.values() for line in lines}))
def test_each_example_parses(line: str) -> None:
    words = shlex.split(line)
    assert words[0] == "fwagent"
    args = build_parser().parse_args(words[1:])
    assert hasattr(args, "run"), f"{line!r} names no command that runs"


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_the_help_ends_with_the_examples(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path.split(), "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out.rstrip("\n")
    expected = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[path])
    assert out.endswith(expected), out[-400:]
