"""scripts/validate_data.py as a user runs it: every check and every bad input, through the CLI (exit code,
message, JSON report)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate_data.py"
GOOD = [{"prompt": f"What is {i} plus {i}?", "completion": f" {2 * i}"} for i in range(12)]


def write_jsonl(path: Path, rows, newline_at_end: bool = True) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


def run(tmp_path: Path, *args: str, env: dict | None = None,
        cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
    report = tmp_path / "report.json"
    if report.exists():
        report.unlink()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    full_env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **(env or {}))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--report", str(report), *args], cwd=cwd or tmp_path,
                          capture_output=True, text=True, env=full_env, timeout=300)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    data = json.loads(report.read_text()) if report.exists() else None
    return proc, data


def problems(report: dict, check: str) -> list[dict]:
    return [p for p in report["problems"] if p["check"] == check]


def test_good_data_passes_with_outputs(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", GOOD)
    proc, report = run(tmp_path, "--input", str(data), "--format", "prompt-completion", "--min-samples", "10")
    assert proc.returncode == 0, proc.stdout
    assert "output result=pass" in proc.stdout and "output num-samples=12" in proc.stdout
    assert "output num-errors=0" in proc.stdout
    assert report["result"] == "pass" and report["num_samples"] == 12 and report["problems"] == []
    assert report["checks"]["empty-fields"]["status"] == "pass"


def test_readme_command_with_schema_and_eval_passes(tmp_path):
    proc, report = run(tmp_path, "--input", "examples/data/train.jsonl", "--schema", "examples/data/schema.json",
                       "--eval-data", "examples/data/eval.jsonl", "--min-samples", "10", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout
    assert report["num_samples"] == 59 and report["checks"]["overlap"]["status"] == "pass"


def test_every_bad_row_listed_with_line_and_path(tmp_path):
    rows = [json.dumps(GOOD[0]), '{"prompt": "x", "completion": 3}', '{"prompt": "open', "",
            '{"prompt": "  ", "completion": "y"}', "[1, 2]", json.dumps(GOOD[1])]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "raw.jsonl").write_bytes(data.read_bytes() + b'{"prompt": "caf\xe9", "completion": "z"}\n'
                                         + b'{"prompt": "cut')
    proc, report = run(tmp_path, "--input", "raw.jsonl", "--format", "prompt-completion")
    assert proc.returncode == 1
    got = {(p["line"], p["check"], p["path"]) for p in report["problems"]}
    assert got == {(2, "format", "$.completion"), (3, "json", "$"), (5, "empty-fields", "$.prompt"),
                   (6, "format", "$"), (8, "json", "$"), (9, "json", "$")}
    messages = {p["line"]: p["message"] for p in report["problems"]}
    assert "must be a string" in messages[2]
    assert "malformed JSON" in messages[3]
    assert "invalid UTF-8" in messages[8]
    assert "truncated last line" in messages[9]
    assert report["num_samples"] == 8 and report["num_errors"] == 6
    assert "raw.jsonl:3: json: malformed JSON" in proc.stdout  # annotations outside a runner


def test_schema_violations_name_the_json_path(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["prompt", "completion"],
                                  "properties": {"prompt": {"type": "string", "maxLength": 30},
                                                 "completion": {"type": "string"}}}))
    data = write_jsonl(tmp_path / "d.jsonl", GOOD[:3] + [{"prompt": "x" * 40, "completion": "y"}, {"prompt": "a"}])
    proc, report = run(tmp_path, "--input", str(data), "--schema", str(schema))
    assert proc.returncode == 1
    found = {(p["line"], p["path"]) for p in problems(report, "schema")}
    assert found == {(4, "$.prompt"), (5, "$")}
    assert any("completion" in p["message"] for p in problems(report, "schema"))


def test_chat_order_rules(tmp_path):
    chat = [
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                      {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "system", "content": "s"},
                      {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "user", "content": "v"},
                      {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": " "}]},
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", chat)
    proc, report = run(tmp_path, "--input", str(data), "--empty-fields", "off")
    assert proc.returncode == 1 and report["format"] == "chat"
    by_line = {p["line"]: p["message"] for p in problems(report, "format")}
    assert set(by_line) == {2, 3, 4, 5}
    assert "system message may only come first" in by_line[2]
    assert "before the first user" in by_line[3]
    assert "two user messages" in by_line[4]
    assert "assistant content is empty" in by_line[5]


def test_duplicates_warn_by_default_and_fail_on_warning(tmp_path):
    rows = GOOD + [{"prompt": "What is  1 plus 1? ", "completion": " 2"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    proc, report = run(tmp_path, "--input", str(data))
    assert proc.returncode == 0 and report["num_warnings"] == 1
    [dup] = problems(report, "duplicates")
    assert dup["line"] == 13 and "duplicate of line 2" in dup["message"] and dup["severity"] == "warning"
    proc, report = run(tmp_path, "--input", str(data), "--fail-on", "warning")
    assert proc.returncode == 1 and report["result"] == "fail"
    proc, report = run(tmp_path, "--input", str(data), "--duplicates", "off")
    assert proc.returncode == 0 and problems(report, "duplicates") == []


def test_min_and_max_samples(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD[:5] + [{"prompt": "", "completion": "x"}])
    proc, report = run(tmp_path, "--input", str(data), "--min-samples", "6")
    assert proc.returncode == 1
    [p] = problems(report, "min-samples")
    assert p["line"] is None and "5 valid rows, fewer than min-samples 6" in p["message"]
    proc, report = run(tmp_path, "--input", str(data), "--max-samples", "5", "--min-samples", "0",
                       "--empty-fields", "warning")
    assert proc.returncode == 1 and "6 rows, more than max-samples 5" in problems(report, "max-samples")[0]["message"]


def test_overlap_exact_and_ngram(tmp_path):
    long_q = "the quick brown fox jumps over the lazy dog while seven small cats watch from a tall tree"
    train = write_jsonl(tmp_path / "train.jsonl", GOOD[:4] + [  # line 3 asks "What is 2 plus 2?"
        {"prompt": "Tell me a story.", "completion": f"Once, {long_q.upper()}!"},
    ])
    evald = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "what is 2  plus 2?", "reference": "4"},
                                                  {"prompt": f"Q: {long_q}", "reference": "x"}])
    proc, report = run(tmp_path, "--input", str(train), "--eval-data", str(evald), "--min-samples", "1")
    assert proc.returncode == 1
    hits = {p["line"]: p["message"] for p in problems(report, "overlap")}
    assert set(hits) == {3, 5}
    assert "(exact)" in hits[3] and "eval.jsonl:1" in hits[3]
    assert "(ngram)" in hits[5] and "13-word" in hits[5] and "eval.jsonl:2" in hits[5]


def test_pii_warning_or_error_and_redacted(tmp_path):
    secret = "ghp_" + "a1B2" * 9
    data = write_jsonl(tmp_path / "d.jsonl", GOOD[:3] + [
        {"prompt": "mail jane.doe@corp.example.org", "completion": f"token {secret} from 192.168.10.20"}])
    proc, report = run(tmp_path, "--input", str(data), "--pii", "warning")
    assert proc.returncode == 0
    kinds = sorted(p["message"].split(" (")[0] for p in problems(report, "pii"))
    assert kinds == ["looks like email", "looks like github token", "looks like ipv4"]
    assert secret not in proc.stdout and secret not in json.dumps(report)
    proc, report = run(tmp_path, "--input", str(data), "--pii", "error")
    assert proc.returncode == 1 and report["num_errors"] == 1


def test_length_outliers(tmp_path):
    rows = [{"prompt": f"question number {i}", "completion": "a short answer"} for i in range(40)]
    rows.append({"prompt": "long", "completion": "word " * 2000})
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    proc, report = run(tmp_path, "--input", str(data), "--length-outliers", "warning")
    assert proc.returncode == 0
    [p] = problems(report, "length-outliers")
    assert p["line"] == 41 and "unusually long" in p["message"]


def test_near_duplicates(tmp_path):
    base = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau"
    rows = GOOD[:5] + [{"prompt": base, "completion": "upsilon phi chi psi omega"},
                       {"prompt": base, "completion": "upsilon phi chi psi omega!"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    proc, report = run(tmp_path, "--input", str(data), "--near-duplicates", "true")
    assert proc.returncode == 0
    [p] = problems(report, "near-duplicates")
    assert p["line"] == 7 and "near-duplicate of" in p["message"] and ":6" in p["message"]


def test_token_limit_with_local_tokenizer(tmp_path, tiny_model_dir):
    rows = GOOD[:4] + [{"prompt": "What is one plus one? " * 40, "completion": " two"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    proc, report = run(tmp_path, "--input", str(data), "--tokenizer", str(tiny_model_dir), "--max-tokens", "64")
    assert proc.returncode == 1
    [p] = problems(report, "max-tokens")
    assert p["line"] == 5 and "over the limit of 64" in p["message"]
    assert report["stats"]["tokens"]["max"] > 64 and "Row length (tokens)" in proc.stdout


def test_several_files_glob_and_gzip(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", GOOD[:6])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in GOOD[6:] + [GOOD[0]]) + "\n")
    proc, report = run(tmp_path, "--input", "*.jsonl*")
    assert proc.returncode == 0 and report["num_samples"] == 13
    [dup] = problems(report, "duplicates")
    assert dup["file"] == "b.jsonl.gz" and dup["line"] == 7 and "a.jsonl:1" in dup["message"]


def test_action_inputs_from_env(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    proc, report = run(tmp_path, env={"INPUT_INPUT": str(data), "INPUT_MIN_SAMPLES": "20",
                                      "INPUT_FORMAT": "prompt-completion"})
    assert proc.returncode == 1 and "fewer than min-samples 20" in problems(report, "min-samples")[0]["message"]
    proc, _ = run(tmp_path, env={"INPUT_INPUT": str(data), "INPUT_MIN_SAMPLES": "many"})
    assert proc.returncode == 2 and "min-samples" in proc.stdout


@pytest.mark.parametrize("case, content, needle", [
    ("missing", None, "file not found"),
    ("empty", b"", "is empty"),
    ("blank", b"\n  \n", "no rows"),
    ("bom", b"\xef\xbb\xbf" + json.dumps(GOOD[0]).encode() + b"\n", "byte order mark"),
    ("badgz", b"not gzip at all", "cannot read"),
])
def test_unreadable_inputs_exit_2(tmp_path, case, content, needle):
    path = tmp_path / ("d.jsonl.gz" if case == "badgz" else "d.jsonl")
    if content is not None:
        path.write_bytes(content)
    proc, report = run(tmp_path, "--input", str(path), "--format", "prompt-completion")
    assert proc.returncode == 2, proc.stdout
    assert needle in proc.stdout and "output result=error" in proc.stdout
    assert report is None


@pytest.mark.parametrize("schema_text, needle", [
    ("{not json", "is not valid JSON"),
    ('{"type": "objekt"}', "is not a valid JSON Schema"),
    ('{"$ref": "https://example.com/s.json"}', "refers to other documents"),
    ("", "is empty"),
])
def test_bad_schema_exit_2(tmp_path, schema_text, needle):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    (tmp_path / "s.json").write_text(schema_text)
    proc, _ = run(tmp_path, "--input", str(data), "--schema", "s.json")
    assert proc.returncode == 2 and needle in proc.stdout


def test_usage_errors_exit_2(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    proc, _ = run(tmp_path, "--input", str(data))
    assert proc.returncode == 2 and "cannot tell the data format" in proc.stdout and "--format" in proc.stdout
    proc, _ = run(tmp_path, "--input", str(data), "--format", "chat", "--max-tokens", "10")
    assert proc.returncode == 2 and "needs a tokenizer" in proc.stdout
    proc, _ = run(tmp_path, "--input", str(data), "--format", "text", "--tokenizer", "nowhere")
    assert proc.returncode == 2 and "tokenizer folder not found" in proc.stdout
    proc, _ = run(tmp_path, "--input", str(data), "--format", "text", "--eval-data", "missing.jsonl")
    assert proc.returncode == 2 and "eval-data: file not found" in proc.stdout
