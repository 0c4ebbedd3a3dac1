"""canary_step.py --mode what-if: the live judge replayed from JSON lines or a canary-report.json, no cluster, no
Prometheus; one line out per window as soon as it is judged; a bad line is exit 2 with its line number."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.canary import whatif
from llmops.canary.decision import Policy
from llmops.canary.judge import AnalysisConfig, Limits
from llmops.errors import InputError
from tests.unit.test_canary_cli import ROOT, SCRIPT


def line(n_c, e_c, n_s, e_s, **extra) -> str:
    return json.dumps({"canary": {"requests": n_c, "errors": e_c, **extra}, "stable": {"requests": n_s,
                                                                                        "errors": e_s}})


def what_if(args, stdin: str, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    env.update(PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), "--mode", "what-if", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def records(proc) -> list[dict]:
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]


def test_a_bad_canary_is_rolled_back_from_stdin_and_no_more_lines_are_read(tmp_path):
    stdin = "\n".join([line(100, 1, 1900, 19), line(100, 30, 1900, 19), "this line is never read"]) + "\n"
    proc = what_if(["--windows", "-"], stdin, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = records(proc)
    assert [r["decision"] for r in out] == ["continue", "rollback"]
    assert out[0] == {**out[0], "window": 1, "weight": 5, "next_weight": 10, "outcome": "pass", "paused": False}
    assert out[1]["outcome"] == "fail" and out[1]["next_weight"] == 0
    assert "shown above 5.00%" in out[1]["reason"]
    pooled = out[1]["evidence"]["error_rate"]["pooled"]
    assert pooled["absolute"]["requests"] == 200 and pooled["relative"]["stable_requests"] == 3800


def test_a_healthy_canary_is_promoted_with_flags_of_a_live_run(tmp_path):
    f = tmp_path / "windows.jsonl"
    f.write_text("\n".join(line(4000, 40, 36000, 360) for _ in range(5)) + "\n")
    proc = what_if(["--windows", str(f), "--steps", "10,50,100", "--max-latency-increase", "off"], "", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [(r["weight"], r["decision"]) for r in records(proc)] == [(10, "continue"), (50, "continue"),
                                                                     (100, "promote")]


def test_low_traffic_pauses_and_judging_goes_on_as_a_resumed_run(tmp_path):
    stdin = "\n".join(line(2, 0, 38, 0) for _ in range(4)) + "\n"
    proc = what_if(["--windows", "-", "--inconclusive-limit", "2"], stdin, tmp_path)
    out = records(proc)
    assert proc.returncode == 0 and [r["paused"] for r in out] == [False, False, True, False]
    assert "42 more canary requests at 5%" in out[-1]["reason"]


def test_each_window_is_written_as_soon_as_it_is_judged(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--mode", "what-if", "--windows", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        proc.stdin.write(line(100, 1, 1900, 19) + "\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # before any more input: blocks if it were buffered
        assert first["window"] == 1
        proc.stdin.write(line(100, 60, 1900, 19) + "\n")
        proc.stdin.close()
        assert json.loads(proc.stdout.readline())["decision"] == "rollback"
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if not proc.stdin.closed:
            proc.stdin.close()


def test_a_bad_line_is_exit_2_with_its_line_number(tmp_path):
    proc = what_if(["--windows", "-"], line(100, 1, 1900, 19) + "\n{not json\n", tmp_path)
    assert proc.returncode == 2 and "stdin line 2: not a JSON object" in proc.stdout
    assert "Traceback" not in proc.stderr and len(records(proc)) == 1  # the good first window was still reported


@pytest.mark.parametrize("bad,message", [
    ({"canary": {"requests": 5, "errors": 9}}, "line 2: canary has more errors"),
    ({"canary": {"requests": 5, "latency_seconds": {"1": 3}}, "stable": {"requests": 95}},
     "line 2: canary latency_seconds: histogram has no"),
    ({"canary": {"requests": 5, "latency": 1}}, "unknown canary keys"),
    ({"canary": {"requests": 5}}, "line 2: no requests series for the stable"),
    ({"stable": {}}, "line 2: a window needs a \"canary\" object"),
    ({"canary": {"requests": -1}}, "canary.requests must be a number >= 0"),
])
def test_bad_windows_name_their_line(bad, message):
    stream = io.StringIO(line(100, 1, 1900, 19) + "\n" + json.dumps(bad) + "\n")
    seen = []
    cfg = AnalysisConfig(limits={"error_rate": Limits(0.05, 0.2), "latency_p99": Limits(None, 0.5)},
                         histograms_optional=True)
    with pytest.raises(InputError) as exc:
        whatif.replay(whatif.read_windows(stream, "stdin"), cfg, Policy(), seen.append, "stdin")
    assert message in exc.value.message and exc.value.line == 2 and len(seen) == 1


def test_a_canary_report_replays_under_another_policy(tmp_path):
    windows = [{"weight": 5, "counts": json.loads(line(100, 3, 1900, 19))} for _ in range(6)]
    report = tmp_path / "canary-report.json"
    report.write_text(json.dumps({"decision": "promote", "windows": windows}, indent=2))
    proc = what_if(["--windows", str(report), "--max-error-rate", "0.01"], "", tmp_path)
    assert proc.returncode == 1 and records(proc)[-1]["decision"] == "rollback"
    proc = what_if(["--windows", str(tmp_path / "missing.json")], "", tmp_path)
    assert proc.returncode == 2 and "cannot read windows file" in proc.stdout


def test_live_flags_are_not_needed_but_a_live_run_still_needs_them(tmp_path):
    proc = what_if([], "", tmp_path)
    assert proc.returncode == 2 and "mode what-if needs windows" in proc.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    env.update(PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--mode", "run"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "provider is required in mode run" in proc.stdout
