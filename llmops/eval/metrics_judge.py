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
        self._signature = {**judge.signature(prompt), "orders": "both", "ties": "half"}
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
        extra: dict[str, Any] = {"identical": identical}
        try:
            replies = judge.ask([p for _, p in asks])
        except JudgeUnavailable as exc:
            extra.update(inconclusive=f"judge unavailable (unreachable or failing): {exc}", judge=judge.usage.to_json())
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
        if asked and unparseable > judge.max_unparseable * asked:
            extra["inconclusive"] = (f"the judge's reply could not be parsed on {unparseable} of {asked} rows "
                                     f"(> {judge.max_unparseable:.0%}); check the judge model and prompt")
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
        self._signature = {**judge.signature(prompt), "scale": "1-5"}
        prompts = [fill(prompt, question=(run.prompts[i] if run.prompts else ""), reference=run.references[i],
                        answer=run.predictions[i]) for i in range(len(run))]
        try:
            replies = judge.ask(prompts)
        except JudgeUnavailable as exc:
            return MetricValue(float("nan"), None, {"inconclusive": f"judge unavailable (unreachable or failing): {exc}",
                                                    "judge": judge.usage.to_json()})
        scores = [parse_score(r) for r in replies]
        stats = np.array([[s or 0, s is not None] for s in scores], dtype=float).reshape(-1, 2)
        bad = sum(s is None for s in scores)
        extra: dict[str, Any] = {"unparseable": bad, "judge": judge.usage.to_json()}
        if bad > judge.max_unparseable * len(scores) or not stats[:, 1].any():
            extra["inconclusive"] = (f"the judge's score could not be parsed on {bad} of {len(scores)} rows "
                                     f"(> {judge.max_unparseable:.0%}); check the judge model and rubric")
        value = self.aggregate(stats) if stats[:, 1].any() else float("nan")
        return MetricValue(value, stats, extra)

    def from_sums(self, totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / totals[:, 1]
