"""What every script's main() shares: catch our errors, report them the runner's way, exit with the right code.

A script does ``raise SystemExit(run_script(main))``; ``main(argv)`` returns an exit code (0 or 1). An
``LLMOpsError`` becomes an ``::error::`` line, a summary section and the ``result`` output; an unexpected
exception is reported as an internal error (with the traceback, since it is our bug, not the user's input).
The library's log records become annotations (``gha.forward_logs``).

``parse_args(parser, argv)`` is how every script reads its flags: kebab-case is canonical (``--model-name``,
listed first in ``--help``); each ``--a-b`` flag also answers to ``--a_b`` (``kebab_argv``), so the seed
pipeline's ``--model_name`` / ``--output_dir`` / ``--model_dir`` / ``--eval_data`` and accelerate-style spellings keep
working, and flags not given fall back to their action input (``INPUT_<NAME>``, ``gha.parse_args``).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from llmops import gha
from llmops.errors import EXIT_INFRA, LLMOpsError

ALIAS_NOTE = "Every --kebab-case flag also accepts its --snake_case spelling (--model_name for --model-name)."


def kebab_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Kebab-case first in every option's spellings (usage and --help show it) and the alias rule in the epilog; an
    alias a script names itself (the seed's ``--model_name``) stays listed after the kebab spelling."""
    for action in parser._actions:  # argparse exposes no public iterator over its options
        spellings = action.option_strings
        action.option_strings = [s for s in spellings if "_" not in s] + [s for s in spellings if "_" in s]
    if ALIAS_NOTE not in (parser.epilog or ""):
        parser.epilog = f"{parser.epilog}\n\n{ALIAS_NOTE}" if parser.epilog else ALIAS_NOTE
    return parser


def kebab_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--a_b`` (or ``--a_b=v``) -> ``--a-b`` wherever ``--a-b`` is an option and ``--a_b`` is not (up to ``--``).
    Rewriting the command line, rather than registering a second spelling, keeps argparse's prefix matching
    unambiguous and lets the action-input fallback see which flags were given."""
    known = {s for action in parser._actions for s in action.option_strings}
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        flag, eq, value = arg.partition("=")
        if flag.startswith("--") and "_" in flag and flag not in known:
            kebab = "--" + flag[2:].replace("_", "-")
            if kebab in known:
                arg = kebab + eq + value
        out.append(arg)
    return out


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> Any:
    """The script's flags (kebab-case, underscore spellings accepted), action inputs for the flags not given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return gha.parse_args(kebab_flags(parser), kebab_argv(parser, argv))


def _on_sigterm(signum, frame):  # a cancelled workflow step gets SIGTERM (then SIGKILL): unwind like Ctrl-C
    raise KeyboardInterrupt


def run_script(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
               *, title: str = "") -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    gha.forward_logs()  # the library logs; its notices and warnings become the runner's annotations
    try:
        code = main(argv)
        return int(code or 0)
    except LLMOpsError as exc:
        report_error(exc, title=title)
        return exc.exit_code
    except KeyboardInterrupt:
        gha.error("cancelled")
        gha.set_output("result", "cancelled")
        return 130
    except Exception:  # noqa: BLE001 - last resort: a bug in llmops-actions, not bad input
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        gha.error("internal error in llmops-actions (please report it with the traceback above): "
                  + tb.strip().splitlines()[-1])
        gha.set_output("result", "error")
        return EXIT_INFRA + 1


def report_error(exc: LLMOpsError, *, title: str = "") -> None:
    message = exc.message + (f" — fix: {exc.hint}" if exc.hint else "")
    gha.error(message, file=exc.file, line=exc.line)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        summary = gha.Summary().heading(f"{title or 'llmops'}: {exc.result}")
        summary.text(f"**{type(exc).__name__}**: {exc.message}")
        if exc.hint:
            summary.text(f"**How to fix:** {exc.hint}")
        summary.write()
    gha.set_output("result", exc.result)
