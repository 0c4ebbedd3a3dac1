"""Reading the evaluation verdict (evaluate-and-gate's JSON) defensively before anything is promoted.

Only the top-level ``result`` is trusted (pass / fail / inconclusive, any case); every other shape is an InputError
that says what was found. ``inconclusive`` passes only when the gate's own policy said so (``"on_inconclusive":
"pass"``, evaluate-and-gate's on-inconclusive input), with a warning. The file's sha256 is recorded on the Deployment so a revision names the verdict it used.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llmops.errors import CheckFailed, InputError, UsageError

RESULTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    result: str
    sha256: str
    path: str
    reason: str = ""
    on_inconclusive: str = "fail"


def read_verdict(path: str) -> Verdict:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the verdict file {path}: {exc.strerror}",
                         "pass the JSON written by evaluate-and-gate (its verdict output)", file=path) from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"verdict {path} is not UTF-8 text", file=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"verdict {path} is not valid JSON: {exc.msg} (line {exc.lineno})",
                         "pass the JSON written by evaluate-and-gate", file=path, line=exc.lineno) from None
    if not isinstance(doc, dict):
        raise InputError(f"verdict {path} must be a JSON object with a 'result' field, got {type(doc).__name__}",
                         file=path)
    result = doc.get("result")
    if not isinstance(result, str) or result.strip().lower() not in RESULTS:
        raise InputError(f"verdict {path} has result={result!r}; expected one of {', '.join(RESULTS)}",
                         "pass the JSON written by evaluate-and-gate", file=path)
    reason = doc.get("reason") or doc.get("message") or doc.get("summary") or ""
    policy = doc.get("on_inconclusive")
    return Verdict(result.strip().lower(), hashlib.sha256(raw).hexdigest(), str(p),
                   reason if isinstance(reason, str) else "",
                   "pass" if isinstance(policy, str) and policy.strip().lower() == "pass" else "fail")


def require_pass(path: str | None, *, force: bool) -> Verdict | None:
    """The verdict, checked: a missing or non-pass verdict stops the promotion unless ``force``."""
    if not path:
        if force:
            return None
        raise UsageError("no evaluation verdict given: promotion needs evaluate-and-gate's verdict to say pass",
                         "pass --verdict (verdict input) with the gate's JSON, or --force to promote without it")
    verdict = read_verdict(path)
    if verdict.result == "inconclusive" and verdict.on_inconclusive == "pass" and not force:
        from llmops import gha
        gha.warning(f"the evaluation verdict is inconclusive; promoting because its gate treats inconclusive as pass "
                    f"(on_inconclusive: pass in {path})")
        return verdict
    if verdict.result != "pass" and not force:
        raise CheckFailed(f"the evaluation verdict says {verdict.result}"
                          f"{': ' + verdict.reason if verdict.reason else ''}; not promoting",
                          "fix the model or the gate, or pass --force to promote anyway")
    return verdict
