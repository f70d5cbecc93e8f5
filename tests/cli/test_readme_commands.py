"""Every ``llama-gateway …`` command the README shows parses as written: its subcommand and
flags exist (the commands' behaviour is tested in the other files here). A bare
``llama-gateway WORD`` in the prose names a command, which must exist."""

from __future__ import annotations

import re
import shlex

import pytest

from gateway.cli import build_parser
from tests.cli.conftest import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    found: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #")[0].strip().removesuffix("&").strip()
            if line.startswith("echo ") and "| llama-gateway " in line:
                line = line.split("| ", 1)[1]
            if line.startswith("llama-gateway "):
                found.append(line)
    for span in re.findall(r"`(llama-gateway [^`]+)`", text):
        command = " ".join(span.split())
        placeholder = any(word in command for word in ("…", "NAME", "SOURCE"))
        if not placeholder and len(command.split()) > 2:  # two words: a command's name
            found.append(command)
    return sorted(set(found))


def _named_commands() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"`llama-gateway ([a-z]+)`", text))


COMMANDS = _readme_commands()


def test_the_readme_shows_the_commands_a_newcomer_needs() -> None:
    shown = {shlex.split(c)[1] for c in COMMANDS}
    assert {"serve", "run", "ps", "list", "show", "stop", "pull", "keys"} <= shown


def test_commands_named_in_the_prose_exist() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    assert _named_commands() <= set(commands.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(argv)
        assert done.value.code == 0
        return
    args = build_parser().parse_args(argv)
    assert callable(args.handler)
