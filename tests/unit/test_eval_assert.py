"""Assertions as metrics: per-row and global specs, pass rates, and the gate (thresholds and McNemar) on them."""
from __future__ import annotations

import json

import pytest

from llmops.errors import InputError, UsageError
from llmops.eval.backends import Generation, Generations
from llmops.eval.config import GateConfig, Threshold
from llmops.eval.data import EvalData, Sample, load_eval_data
from llmops.eval.gate import Baseline
from llmops.eval.runner import build_run, build_verdict, compute_metrics

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}


def run_of(preds, asserts=None, tools=None):
    n = len(preds)
    samples = [Sample(f"s{i}", "ref", i + 1, prompt=f"q{i}", asserts=(asserts or [None] * n)[i],
                      tools=(tools or [None] * n)[i]) for i in range(n)]
    data = EvalData("e.jsonl", samples, n, "sha256:x")
    gens = Generations([Generation(p) for p in preds], None, {"backend": "predictions"})
    return data, gens, build_run(data, gens, backend="predictions")


def values(preds, names, options=None, **kw):
    _, _, run = run_of(preds, **kw)
    results, _ = compute_metrics(run, names, GateConfig(metric_options=options or {}))
    return {name: results[name].value for name in names}, results


def test_each_assertion_on_outputs_a_user_would_write():
    preds = ['{"a": 1}', '```json\n{"a": "x"}\n```', "not json", '{"b": 2}']
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    vals, results = values(preds, ["json_valid", "json_schema", "regex", "contains", "not_contains",
                                   "starts_with"],
                           {"json_schema": {"value": schema}, "regex": {"value": r'"a":\s*\d'},
                            "contains": {"value": ["{", "}"]}, "not_contains": {"value": "x"},
                            "starts_with": {"value": ["{", "```"]}})
    assert vals == {"json_valid": 0.75, "json_schema": 0.25, "regex": 0.25, "contains": 0.75,
                    "not_contains": 0.75, "starts_with": 0.75}
    assert results["json_schema"].extra["failed_ids"] == ["s1", "s2", "s3"]
    vals, _ = values(["Yes, sure", "no"], ["starts_with"], {"starts_with": {"value": "yes", "ignore_case": True}})
    assert vals["starts_with"] == 0.5


def test_per_row_specs_override_the_global_one_and_rows_without_one_are_left_out():
    preds = ["ok 42", "ok", "anything", "nope"]
    asserts = [{"regex": r"\d+"}, {"regex": r"\d+"}, None, {"regex": "^ok"}]
    vals, results = values(preds, ["regex"], asserts=asserts)
    assert vals["regex"] == pytest.approx(1 / 3) and results["regex"].extra["applicable"] == 3
    vals, _ = values(preds, ["regex"], {"regex": {"value": "an"}}, asserts=asserts)
    assert vals["regex"] == 0.5  # the third row now checked by the global pattern: "anything" matches


def test_tool_calls_are_checked_against_the_declared_tools():
    call = {"tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                             "arguments": json.dumps({"city": "Oslo"})}}]}
    preds = [json.dumps(call), json.dumps({"name": "get_weather", "arguments": {"city": 3}}),
             json.dumps({"name": "send_mail", "arguments": {}}), "I think it's sunny",
             json.dumps([{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}])]
    vals, results = values(preds, ["tool_call_valid"], tools=[[WEATHER]] * 5)
    assert vals["tool_call_valid"] == 0.4
    assert results["tool_call_valid"].extra["failed_ids"] == ["s1", "s2", "s3"]
    vals, _ = values(preds, ["tool_call_valid"], {"tool_call_valid": {"value": [WEATHER]}})
    assert vals["tool_call_valid"] == 0.4


def test_bad_specs_and_nothing_to_check_are_clear_errors():
    with pytest.raises(UsageError, match="cannot compute regex: regex has nothing to check"):
        values(["a"], ["regex"])
    with pytest.raises(UsageError, match="invalid pattern"):
        values(["a"], ["regex"], {"regex": {"value": "("}})
    with pytest.raises(UsageError, match="invalid JSON Schema"):
        values(["a"], ["json_schema"], {"json_schema": {"value": {"type": "no-such-type"}}})
    with pytest.raises(UsageError, match="unknown option"):
        values(["a"], ["contains"], {"contains": {"value": "a", "case": 1}})


def test_eval_rows_carry_assertions_and_tools(tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [{"prompt": "weather?", "reference": "-", "tools": [WEATHER]},
            {"prompt": "json?", "reference": "{}", "assert": {"json_schema": {"type": "object"}, "regex": "^{"}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_eval_data(path)
    assert data.samples[0].tools == [WEATHER] and data.samples[1].asserts["regex"] == "^{"
    path.write_text(json.dumps({"prompt": "q", "reference": "r", "assert": {"regexp": "x"}}) + "\n")
    with pytest.raises(InputError, match="unknown regexp"):
        load_eval_data(path)


def test_the_gate_fails_a_drop_in_a_pass_rate_and_honours_its_threshold(tmp_path):
    n = 120
    good = ['{"ok": true}'] * n
    bad = ['{"ok": true}'] * (n // 2) + ["Sure! Here is the JSON: {ok}"] * (n // 2)
    data, gens, run = run_of(good)
    config = GateConfig(thresholds={"json_valid": Threshold(min=0.9)})
    results, skipped = compute_metrics(run, ["json_valid", "exact_match"], config)
    doc = build_verdict(data=data, gens=gens, results=results, skipped=skipped, config=config, baseline=None,
                        model={})
    (tmp_path / "b.json").write_text(json.dumps(doc))
    baseline = Baseline.load(tmp_path / "b.json")
    data, gens, run = run_of(bad)
    results, skipped = compute_metrics(run, ["json_valid", "exact_match"], config)
    v = build_verdict(data=data, gens=gens, results=results, skipped=skipped, config=config, baseline=baseline,
                      model={})
    m = v["metrics"]["json_valid"]
    assert v["result"] == "fail" and m["value"] == 0.5 and m["threshold_status"] == "fail"
    assert m["baseline"]["test"] == "mcnemar" and m["baseline"]["discordant"] == {"baseline_only": 60,
                                                                                 "candidate_only": 0}
    assert m["baseline"]["status"] == "fail" and "json_valid regressed" in " ".join(m["reasons"])
