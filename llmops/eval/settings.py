"""Generation settings: what every verdict records about how its answers were generated, and the refusal to
compare a candidate with a baseline whose answers were generated differently.

A paired comparison measures whatever differs between the two runs. When the baseline generated 8 tokens and the
candidate 16, a BLEU or exact-match "regression" is the setting's, not the model's, so ``check`` refuses the
comparison (``UsageError``, exit 2) naming each difference, unless the user allows it (``allow-setting-changes``),
in which case the differences are returned as warnings for the summary. A baseline verdict written before settings
were recorded is compared with a warning, never refused; so is a run on a predictions file, whose settings are
unknown.

Recorded (``generation_settings``): ``max_new_tokens``, ``temperature``, ``top_p`` (only when sampling: greedy
decoding ignores it), ``stop`` (stop sequences sent; none today), ``api`` (``completions``, ``chat`` or both, from
the rows: chat rows are rendered by the server's or tokenizer's chat template, prompt rows are sent as they are)
and ``system_prompt`` (a hash of the distinct system messages of the chat rows, so a changed system prompt with
unchanged sample ids is caught). Only keys both verdicts record are compared.
"""
from __future__ import annotations

import hashlib

from llmops.errors import UsageError

COMPARED = ("max_new_tokens", "temperature", "top_p", "stop", "api", "system_prompt")
FLAGS = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_p": "--top-p"}


def generation_settings(*, max_new_tokens: int, temperature: float, top_p: float, samples: list) -> dict:
    chat = [s for s in samples if getattr(s, "is_chat", False)]
    api = "chat" if chat and len(chat) == len(samples) else "completions+chat" if chat else "completions"
    systems = sorted({m.get("content") or "" for s in chat for m in s.messages or [] if m.get("role") == "system"})
    settings: dict = {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "stop": [],
                      "api": api}
    if temperature > 0:
        settings["top_p"] = float(top_p)
    settings["system_prompt"] = (hashlib.sha256("\x00".join(systems).encode()).hexdigest()[:12] if systems
                                 else None)
    return settings


def differences(candidate: dict, baseline: dict) -> list[str]:
    """``name: candidate (baseline: value)`` for each compared setting both record and that differs."""
    out = []
    for key in COMPARED:
        if key in candidate and key in baseline and candidate[key] != baseline[key]:
            out.append(f"{key} {_show(candidate[key])} (baseline: {_show(baseline[key])})")
    return out


def _show(value: object) -> str:
    return "none" if value in (None, []) else repr(value) if isinstance(value, (str, list)) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def check(candidate: dict | None, baseline_verdict: dict, baseline_path: str, *, allow: bool) -> dict:
    """The comparison's settings check for the verdict: {status, differences, note}; raises when refused.

    status: ``same``, ``allowed`` (differences, compared because the user allowed it), ``not-recorded`` (one side
    records no settings: compared with a warning).
    """
    base = baseline_verdict.get("generation")
    if not isinstance(candidate, dict) or "max_new_tokens" not in candidate:
        return {"status": "not-recorded", "differences": [],
                "note": "this run's generation settings are unknown (predictions made elsewhere), so they were not "
                        "checked against the baseline's"}
    if not isinstance(base, dict) or "max_new_tokens" not in base:
        return {"status": "not-recorded", "differences": [],
                "note": f"the baseline verdict {baseline_path} records no generation settings (written before they "
                        "were recorded, or from a predictions file), so they could not be checked; rerun the baseline "
                        "evaluation to have them checked"}
    diffs = differences(candidate, base)
    if not diffs:
        return {"status": "same", "differences": [], "note": ""}
    if not allow:
        fix = [f"{FLAGS[k]} {_show(base[k])}" for k in FLAGS if any(d.startswith(k + " ") for d in diffs)]
        raise UsageError(f"the baseline verdict {baseline_path} was generated with other settings: "
                         + "; ".join(diffs) + ". A comparison would measure the settings, not the model",
                         "generate with the baseline's settings" + (f" ({' '.join(fix)})" if fix else "")
                         + ", rerun the baseline with these, or pass --allow-setting-changes (input "
                         "allow-setting-changes: true) to compare anyway", file=baseline_path)
    return {"status": "allowed", "differences": diffs,
            "note": "compared although the generation settings differ (allow-setting-changes): " + "; ".join(diffs)}
