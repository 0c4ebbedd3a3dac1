"""The one error hierarchy: every failure a user can cause or meet carries a message, the fix, and an exit code.

Exit codes (same for every script and action):
    0 ok, 1 a check/gate/analysis said no, 2 bad usage/config/input, 3 infrastructure unreachable.

Only a script's main() (through ``llmops.cli.run_script``) catches these; the library raises and never exits.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3


class LLMOpsError(Exception):
    """Base error: ``message`` says what went wrong, ``hint`` says how to fix it."""

    exit_code = EXIT_USAGE
    result = "error"

    def __init__(self, message: str, hint: str | None = None, *, file: str | None = None,
                 line: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.file = file
        self.line = line

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class UsageError(LLMOpsError):
    """A flag, action input or config file is wrong (exit 2)."""


class InputError(LLMOpsError):
    """An input file (data, model folder, verdict, kubeconfig...) is missing or malformed (exit 2)."""


class CheckFailed(LLMOpsError):
    """The thing being checked was judged and failed: data checks, a quality gate, a canary (exit 1)."""

    exit_code = EXIT_FAILED
    result = "fail"


class InfraError(LLMOpsError):
    """Something we depend on could not be reached: API server, Prometheus, an endpoint (exit 3)."""

    exit_code = EXIT_INFRA
