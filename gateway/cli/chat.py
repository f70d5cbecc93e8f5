"""``llama-gateway run MODEL [PROMPT]`` (alias ``chat``): talk to a model on a running gateway.

With a PROMPT, or with text piped on stdin, it answers once and exits (both given: the
prompt, then the piped text). Otherwise it is a REPL, in the manner of ``ollama run``: the
answer streams as it is generated, the conversation is remembered, ``\"\"\"`` opens and closes
a multi-line message, Ctrl-C stops the answer (not the REPL), Ctrl-D or ``/bye`` leaves.
``--verbose`` prints the time to first token and tokens per second after each answer.
Exit codes: 0 done, 1 the gateway refused or did not answer.
"""

from __future__ import annotations

import argparse
import sys
import time

from gateway.cli.client import ClientError, GatewayClient, add_connection_flags, fail
from gateway.cli.conversation import PARAMETERS, AnswerStats, Conversation, parse_parameter

__all__ = ["add_parser"]

HELP = """Available commands:
  /set system TEXT            set the system message (and start over)
  /set parameter NAME VALUE   set a sampling parameter: temperature 0.2, top_k 40,
                              num_predict 128, seed 1, stop "###", ignore_eos true, …
  /show parameters            what is set
  /clear                      forget the conversation so far
  /bye                        leave (Ctrl-D too)
  /?                          this help

Start a message with \"\"\" to write several lines; end it with \"\"\".
Ctrl-C stops an answer."""

_FENCE = '"""'


def add_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        aliases=["chat"],
        help="chat with a model (or answer one PROMPT / piped stdin)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("model", help="a model id the gateway serves (see `llama-gateway list`)")
    run.add_argument("prompt", nargs="*", help="answer this once and exit")
    run.add_argument("--system", help="the system message")
    run.add_argument("--verbose", action="store_true", help="print TTFT and tokens/s")
    add_connection_flags(run)
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    client = GatewayClient.from_args(args, timeout=600)
    conversation = Conversation(client, args.model, system=args.system)
    try:
        prompt = " ".join(args.prompt)
        if not sys.stdin.isatty():
            piped = sys.stdin.read()
            prompt = f"{prompt}\n\n{piped}" if prompt else piped
        if prompt.strip() or not sys.stdin.isatty():
            if not prompt.strip():
                return fail(ClientError("nothing to ask: the prompt and stdin are empty", 2))
            return _answer_once(conversation, prompt, args.verbose)
        return _repl(conversation, args.verbose)
    except ClientError as exc:
        return fail(exc)
    finally:
        client.close()


def _answer_once(conversation: Conversation, prompt: str, verbose: bool) -> int:
    stats = AnswerStats(time.monotonic())
    for piece in conversation.ask(prompt, stats):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if verbose:
        print(stats.summary(), file=sys.stderr)
    return 0


def _stream(conversation: Conversation, prompt: str, verbose: bool) -> None:
    """One answer in the REPL; Ctrl-C ends it early and returns to the prompt."""
    stats = AnswerStats(time.monotonic())
    answer = conversation.ask(prompt, stats)
    try:
        for piece in answer:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        answer.close()  # closes the stream: the gateway cancels the generation
        sys.stdout.write("\n[stopped]\n")
        return
    except ClientError as exc:
        print(f"\nError: {exc}", file=sys.stderr)
        return
    sys.stdout.write("\n\n")
    if verbose:
        print(stats.summary(), file=sys.stderr)


def _repl(conversation: Conversation, verbose: bool) -> int:
    from prompt_toolkit import PromptSession

    session: PromptSession[str] = PromptSession()
    print(f"Chatting with {conversation.model} at {conversation.client.url}. /? for help.")
    while True:
        try:
            line = session.prompt(">>> ")
            if line.lstrip().startswith(_FENCE):
                line = _multiline(session, line.lstrip()[len(_FENCE) :])
        except KeyboardInterrupt:
            print("Use Ctrl + d or /bye to exit.")
            continue
        except EOFError:
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if _command(conversation, text):
                return 0
            continue
        _stream(conversation, line, verbose)


def _multiline(session: object, first: str) -> str:
    """Lines up to the closing ``\"\"\"`` (which may end the first line already)."""
    lines = [first]
    while not lines[-1].rstrip().endswith(_FENCE):
        lines.append(session.prompt("... "))  # type: ignore[attr-defined]
    lines[-1] = lines[-1].rstrip().removesuffix(_FENCE)
    return "\n".join(lines).strip("\n")


def _command(conversation: Conversation, text: str) -> bool:
    """Run one ``/`` command; ``True`` to leave."""
    words = text.split(maxsplit=3)
    name = words[0].lower()
    if name in ("/bye", "/exit"):
        return True
    if name in ("/?", "/help"):
        print(HELP)
    elif name == "/clear":
        conversation.clear()
        print("Cleared the conversation.")
    elif name == "/set" and len(words) >= 3 and words[1] == "system":
        conversation.system = text.split(maxsplit=2)[2].strip().strip('"')
        conversation.clear()
        print("Set the system message.")
    elif name == "/set" and len(words) == 4 and words[1] == "parameter":
        try:
            key, value = parse_parameter(words[2], words[3].strip().strip('"'))
        except ValueError as exc:
            print(f"Error: {exc}")
            return False
        conversation.parameters[key] = value
        print(f"Set parameter '{words[2]}' to '{value}'.")
    elif name == "/show" and len(words) >= 2 and words[1] == "parameters":
        shown = {"system": conversation.system, **conversation.parameters}
        for key, value in shown.items():
            print(f"  {key:<18}{value}")
    else:
        print(f"Unknown command {text!r}; /? lists them (parameters: {', '.join(PARAMETERS)}).")
    return False
