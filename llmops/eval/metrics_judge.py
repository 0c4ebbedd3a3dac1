"""Judge metrics: ``judge_pairwise`` (win rate against the baseline's answers) and ``judge_rubric`` (1-5 score).

How the judge is asked and its replies parsed is in judge.py. Per-sample stats:

- ``judge_pairwise``: (win, loss, judged) per row; value = win rate with ties counted half over the judged rows
  (0.5: as good as the baseline). The gate's test is the one-sided paired sign test (``stats.sign_test``): the
  baseline's answers are judged in this run, so its verdict needs only ``samples.outputs``, not this metric.
- ``judge_rubric``: (score, scored) per row; value = mean score over scored rows; paired bootstrap against a
  baseline verdict scored with the same judge and rubric (the signature says which).

A judge failure sets ``extra["inconclusive"]`` (the gate reports the metric inconclusive with that reason).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from llmops.eval.judge import JudgeUnavailable, fill, parse_choice, parse_score
from llmops.eval.metric_base import EvalRun, Metric, MetricUnavailable, MetricValue, register

VOTE = {"A": 1, "B": -1, "TIE": 0}


def _judge(run: EvalRun, name: str):
    judge = run.judge
    if judge is None or not judge.configured:
        raise MetricUnavailable(f"{name} needs a judge model: pass --judge-endpoint URL (OpenAI-compatible) or "
                                "--judge-model-dir FOLDER")
    return judge


class _JudgeMetric(Metric):
    higher_is_better = True
    option_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._signature: dict = {}

    def settings(self) -> dict[str, Any]:
        return dict(self._signature)

    def _ask(self, judge, prompt: str, filled: list[str], **settings: str) -> tuple[list[str] | None, dict]:
        """Record the signature (judge, ``prompt``, ``settings``) and ask the judge every filled prompt: (replies,
        extra); (None, extra saying why the metric is inconclusive) when the judge is unavailable."""
        self._signature = {**judge.signature(prompt), **settings}
        try:
            return judge.ask(filled), {}
        except JudgeUnavailable as exc:
            return None, {"inconclusive": f"judge unavailable (unreachable or failing): {exc}",
                          "judge": judge.usage.to_json()}


def _unparseable(judge, bad: int, asked: int, what: str, fix: str, force: bool = False) -> str | None:
    """Why the metric is inconclusive when more than the judge's allowance of replies (or, ``force``, any reply
    at all) could not be parsed; None when enough could."""
    if force or (asked and bad > judge.max_unparseable * asked):
        return (f"the judge's {what} could not be parsed on {bad} of {asked} rows (> {judge.max_unparseable:.0%}); "
                f"check the judge model and {fix}")
    return None


@register
class JudgePairwise(_JudgeMetric):
    name = "judge_pairwise"
    test = "sign"
    default_min_effect = 0.02
    unit = "win rate vs baseline"

    def compute(self, run: EvalRun) -> MetricValue:
        judge = _judge(run, self.name)
        if run.baseline_outputs is None:
            raise MetricUnavailable(f"{self.name} compares with the baseline's answers: pass --baseline with a "
                                    "verdict that stores them (samples.outputs, written since this version)")
        prompt = judge.pairwise_prompt()
        n = len(run)
        stats = np.zeros((n, 3))
        asks: list[tuple[int, str]] = []
        identical = 0
        for i, sid in enumerate(run.ids):
            base = run.baseline_outputs.get(sid)
            if base is None:
                continue
            cand = run.predictions[i]
            if cand.strip() == base.strip():
                stats[i, 2] = 1  # a tie without asking
                identical += 1
                continue
            q, ref = (run.prompts[i] if run.prompts else ""), run.references[i]
            asks.append((i, fill(prompt, question=q, reference=ref, answer_a=cand, answer_b=base)))
            asks.append((i, fill(prompt, question=q, reference=ref, answer_a=base, answer_b=cand)))
        replies, extra = self._ask(judge, prompt, [p for _, p in asks], orders="both", ties="half")
        extra["identical"] = identical
        if replies is None:
            return MetricValue(float("nan"), None, extra)
        wins = losses = ties = inconsistent = unparseable = 0
        for k in range(0, len(asks), 2):
            i = asks[k][0]
            first, second = parse_choice(replies[k]), parse_choice(replies[k + 1])
            if first is None or second is None:
                unparseable += 1
                continue
            s1, s2 = VOTE[first], -VOTE[second]  # the candidate's view in each order
            inconsistent += s1 * s2 < 0
            total = s1 + s2
            stats[i] = (total > 0, total < 0, 1)
            wins, losses, ties = wins + (total > 0), losses + (total < 0), ties + (total == 0)
        asked = len(asks) // 2
        extra.update(wins=wins, losses=losses, ties=ties + identical, inconsistent=inconsistent,
                     unparseable=unparseable, judged=int(stats[:, 2].sum()), judge=judge.usage.to_json())
        bad = _unparseable(judge, unparseable, asked, "reply", "prompt")
        if bad:
            extra["inconclusive"] = bad
        elif asked and inconsistent > judge.max_inconsistent * (asked - unparseable):
            extra["inconclusive"] = (f"the judge contradicted itself across the two orders on {inconsistent} of "
                                     f"{asked - unparseable} rows (> {judge.max_inconsistent:.0%}): position "
                                     "bias, not a judgement")
        if not stats[:, 2].any():
            extra.setdefault("inconclusive", "no row shared with the baseline's answers could be judged")
            return MetricValue(float("nan"), stats, extra)
        return MetricValue(self.aggregate(stats), stats, extra)

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 + (totals[:, 0] - totals[:, 1]) / (2 * totals[:, 2])


@register
class JudgeRubric(_JudgeMetric):
    name = "judge_rubric"
    test = "bootstrap"
    default_min_effect = 0.1
    unit = "score 1-5"

    def compute(self, run: EvalRun) -> MetricValue:
        judge = _judge(run, self.name)
        prompt = judge.rubric_prompt()
        prompts = [fill(prompt, question=(run.prompts[i] if run.prompts else ""), reference=run.references[i],
                        answer=run.predictions[i]) for i in range(len(run))]
        replies, extra = self._ask(judge, prompt, prompts, scale="1-5")
        if replies is None:
            return MetricValue(float("nan"), None, extra)
        scores = [parse_score(r) for r in replies]
        stats = np.array([[s or 0, s is not None] for s in scores], dtype=float).reshape(-1, 2)
        bad = sum(s is None for s in scores)
        extra.update(unparseable=bad, judge=judge.usage.to_json())
        why = _unparseable(judge, bad, len(scores), "score", "rubric", force=not stats[:, 1].any())
        if why:
            extra["inconclusive"] = why
        value = self.aggregate(stats) if stats[:, 1].any() else float("nan")
        return MetricValue(value, stats, extra)

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / totals[:, 1]
