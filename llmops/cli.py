"""What every script's main() shares: catch our errors, report them the runner's way, exit with the right code.

A script does ``raise SystemExit(run_script(main))``; ``main(argv)`` returns an exit code (0 or 1). An
``LLMOpsError`` becomes an ``::error::`` line, a summary section and the ``result`` output; an unexpected
exception is reported as an internal error (with the traceback, since it is our bug, not the user's input).
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from llmops import gha
from llmops.errors import EXIT_INFRA, LLMOpsError


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
