"""``llama-gateway run`` against the real gateway and llama-servers: the REPL in a real
pseudo-terminal (pexpect) — two remembered turns, an answer stopped with Ctrl-C, ``/bye`` —
and the one-shot forms (a PROMPT, piped stdin)."""

from __future__ import annotations

import re
import sys

import pexpect

from tests.cli.conftest import ROOT, clean_env, run_cli
from tests.support.processes import Gateway, LlamaServer
from tests.support.runners import wait_for

# prompt_toolkit turns bracketed paste on when it starts reading a line and off when the line
# is accepted: the two marks that say "the REPL waits for input" and "this is its output".
_READING = "\x1b[?2004h"
_ACCEPTED = "\x1b[?2004l"


def _spawn(gateway: Gateway, *args: str) -> pexpect.spawn:
    env = clean_env(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")  # no cursor-position queries
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gateway", "run", "smollm2", "--url", gateway.url, *args],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    _wait_prompt(child)
    return child


def _wait_prompt(child: pexpect.spawn, prompt: str = ">>>") -> None:
    child.expect_exact(_READING)
    child.expect_exact(prompt)


def _say(child: pexpect.spawn, line: str) -> None:
    child.sendline(line)
    child.expect_exact(_ACCEPTED)


def test_two_turns_remembered_then_ctrl_c_then_bye(
    gateway: Gateway, backends: list[LlamaServer]
) -> None:
    child = _spawn(gateway, "--verbose")
    try:
        _say(child, "/set parameter num_predict 6")
        child.expect_exact("Set parameter 'num_predict' to '6'.")
        _wait_prompt(child)

        prompts = []
        for question in ("Name a colour.", "And another one?"):
            _say(child, question)
            child.expect(r"prompt (\d+) tokens · answer (\d+) tokens")
            prompts.append(int(child.match.group(1)))
            assert int(child.match.group(2)) >= 1  # a streamed answer came back
            _wait_prompt(child)
        # The second turn carried the first one (question and answer) with it.
        assert prompts[1] > prompts[0] + 6

        _say(child, "/set parameter num_predict 4000")
        _wait_prompt(child)
        _say(child, "/set parameter ignore_eos true")
        _wait_prompt(child)
        _say(child, "Tell me a very long story.")
        # Ctrl-C once the answer streams, long before 4000 tokens are done: a backend slot
        # generating it, and its first word printed. Sent sooner, it lands in prompt_toolkit's
        # teardown of the accepted line, before the answer has started, and no "[stopped]"
        # follows (the three letters alone once matched something prompt_toolkit wrote).
        wait_for("the answer to be generated", lambda: sum(b.busy_slots() for b in backends) > 0)
        child.expect(r"[A-Za-z]{3}")
        child.sendintr()
        child.expect_exact("[stopped]")
        _wait_prompt(child)
        # The REPL is still there, and the gateway stopped generating the answer.
        wait_for("the slots to go idle", lambda: sum(b.busy_slots() for b in backends) == 0)

        _say(child, "/clear")
        child.expect_exact("Cleared the conversation.")
        _wait_prompt(child)
        _say(child, "/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_multi_line_input_and_help(gateway: Gateway) -> None:
    child = _spawn(gateway)
    try:
        _say(child, "/?")
        child.expect_exact("/set parameter NAME VALUE")
        _wait_prompt(child)
        _say(child, "/set parameter num_predict 3")
        _wait_prompt(child)
        _say(child, '"""Say')
        _wait_prompt(child, "...")  # a continuation line: the message is not sent yet
        _say(child, 'hello."""')
        child.expect(r"[A-Za-z]")  # the answer
        _wait_prompt(child)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_a_piped_prompt_is_answered_once(gateway: Gateway) -> None:
    env = clean_env()
    done = run_cli("run", "smollm2", "--url", gateway.url, input="Say hello.\n", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_prompt_argument_with_verbose_timings(gateway: Gateway) -> None:
    done = run_cli("run", "smollm2", "Say", "hi.", "--url", gateway.url, "--verbose", input="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert re.search(r"time to first token \d+\.\d+ s · [\d.]+ tokens/s", done.stderr)


def test_an_unknown_model_is_one_line_and_exit_1(gateway: Gateway) -> None:
    done = run_cli("run", "nope", "hi", "--url", gateway.url, input="")
    assert done.returncode == 1
    assert done.stderr.startswith("llama-gateway: the gateway answered 404:")
    assert done.stderr.count("\n") == 1
