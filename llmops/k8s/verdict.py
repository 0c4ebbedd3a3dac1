"""Reading the evaluation verdict (evaluate-and-gate's JSON) defensively before anything is promoted.

Only the top-level ``result`` is trusted (pass / fail / inconclusive, any case); every other shape is an InputError
that says what was found. ``inconclusive`` passes only when the gate's own policy said so (``"on_inconclusive":
"pass"``, evaluate-and-gate's on-inconclusive input), with a warning. The file's sha256 is recorded on the
Deployment so a revision names the verdict it used. A verdict is for one model: when it names a version
(``model.version``) or a URI (``model.uri``) and the promotion names another, it is refused (exit 2) unless
``force``; a verdict that names no version cannot be checked and says so in a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from llmops.errors import CheckFailed, InputError, UsageError

RESULTS = ("pass", "fail", "inconclusive")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    result: str
    sha256: str
    path: str
    reason: str = ""
    on_inconclusive: str = "fail"
    model_version: str = ""
    model_uri: str = ""


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
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    info = model.get("info") if isinstance(model.get("info"), dict) else {}
    version = model.get("version") or info.get("model_version") or ""
    uri = model.get("uri") or info.get("model_uri") or ""
    return Verdict(result.strip().lower(), hashlib.sha256(raw).hexdigest(), str(p),
                   reason if isinstance(reason, str) else "",
                   "pass" if isinstance(policy, str) and policy.strip().lower() == "pass" else "fail",
                   str(version), str(uri))


def check_model(verdict: Verdict, *, model_version: str | None, model_uri: str | None, force: bool) -> None:
    """Refuse a verdict that is for another model version or URI than the one being promoted."""
    for what, ours, theirs in (("version", model_version, verdict.model_version),
                               ("URI", model_uri, verdict.model_uri)):
        if not ours or not theirs or ours == theirs:
            continue
        if force:
            log.warning("the verdict is for model %s %s, not %s; promoting anyway (--force)", what, theirs, ours)
            continue
        raise UsageError(f"the verdict {verdict.path} is for model {what} {theirs}, not {ours}: a verdict only "
                         "vouches for the model it evaluated", "pass the verdict evaluate-and-gate wrote for "
                         f"{ours} (or --force to promote without a matching verdict)", file=verdict.path)
    if model_version and not verdict.model_version:
        log.warning("the verdict %s names no model version; it cannot be checked against %s", verdict.path,
                    model_version)


def require_pass(path: str | None, *, force: bool, model_version: str | None = None,
                 model_uri: str | None = None) -> Verdict | None:
    """The verdict, checked: a missing or non-pass verdict, or one for another model, stops the promotion unless
    ``force``."""
    if not path:
        if force:
            return None
        raise UsageError("no evaluation verdict given: promotion needs evaluate-and-gate's verdict to say pass",
                         "pass --verdict (verdict input) with the gate's JSON, or --force to promote without it")
    verdict = read_verdict(path)
    check_model(verdict, model_version=model_version, model_uri=model_uri, force=force)
    if verdict.result == "inconclusive" and verdict.on_inconclusive == "pass" and not force:
        log.warning("the evaluation verdict is inconclusive; promoting because its gate treats inconclusive as pass "
                    "(on_inconclusive: pass in %s)", path)
        return verdict
    if verdict.result != "pass" and not force:
        raise CheckFailed(f"the evaluation verdict says {verdict.result}"
                          f"{': ' + verdict.reason if verdict.reason else ''}; not promoting",
                          "fix the model or the gate, or pass --force to promote anyway")
    return verdict
