"""The pieces of validate-data: normalisation fast paths agree with the plain definition, byte-range splitting and
worker processes give the same findings and line numbers as one process, row-to-line mapping, row checks."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import xxhash

from llmops.data import checks, scan
from llmops.data import validate as V
from llmops.data.fastpath import fast_batch, line_modes, norm_field
from llmops.data.reader import LineBlocks, split_ranges
from llmops.errors import UsageError

PIECES = ["a", "b", "word", " ", "  ", "\n", "\t", "\u00a0", "\u3000", "é", "\\", '"', "\r", "\x1f", "n", "\n\n"]


def _random_text(rnd: random.Random) -> str:
    return "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 12)))


def test_fast_normalisation_equals_split_join():
    rnd = random.Random(7)
    lines, values = [], []
    for _ in range(3000):
        a, b = _random_text(rnd) or "x", _random_text(rnd) or "y"
        line = json.dumps({"prompt": a, "completion": b}, ensure_ascii=rnd.random() < 0.5).encode()
        lines.append(line)
        values.append((a, b))
        assert norm_field(line, a) == checks.normalize(a)
    modes = line_modes(lines)
    for mode, (a, b) in zip(modes, values, strict=True):
        for text in (a, b):
            got = text.strip() if mode == 0 else text.replace("\n", " ").strip() if mode == 1 else None
            if got is not None:
                assert got == checks.normalize(text), (mode, text)
    assert {0, 1, 2} <= set(modes)


def test_fast_batch_matches_row_by_row_and_refuses_bad_batches():
    rows = [{"prompt": f"q {i}\n  more", "completion": f"a{i}"} for i in range(50)]
    lines = [orjson.dumps(r) for r in rows]
    hashes, lengths = fast_batch(lines, "prompt", "completion", None)
    for line, row, h, n in zip(lines, rows, hashes, lengths, strict=True):
        text = checks.dedup_text("prompt-completion", row, line)
        assert text == checks.dedup_text("prompt-completion", row)
        assert n == len(text) and h == xxhash.xxh3_64_intdigest(text.encode())
    assert fast_batch(lines + [b'{"prompt": " ", "completion": "x"}'], "prompt", "completion", None) is None
    assert fast_batch(lines + [b'{"prompt": "x", "completion": "y", "id": 1}'], "prompt", "completion", None) is None
    assert fast_batch(lines + [b"{oops"], "prompt", "completion", None) is None


def test_split_ranges_cover_the_file_at_line_starts(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(b'{"text": "%d"}\n' % i for i in range(1000)))
    ranges = split_ranges(path, 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    lines = [line for a, b in ranges for block in LineBlocks(path, a, b) for line in block]
    assert lines == [b'{"text": "%d"}' % i for i in range(1000)]


def test_workers_give_the_same_findings_as_one_process(tmp_path, monkeypatch):
    rnd = random.Random(3)
    out_lines = []
    for i in range(6000):
        roll = rnd.random()
        if roll < 0.01:
            out_lines.append("")
        elif roll < 0.02:
            out_lines.append('{"prompt": "broken')
        elif roll < 0.05:
            out_lines.append(json.dumps({"prompt": "dup", "completion": "same"}))
        else:
            out_lines.append(json.dumps({"prompt": f"p{i}", "completion": "c" if roll > 0.06 else " "}))
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(out_lines) + "\n")
    monkeypatch.setattr(V, "PARALLEL_BYTES", 1000)
    results = []
    for workers in (1, 2):
        out = V.validate(V.Options(inputs=[str(path)], fmt="prompt-completion", workers=workers))
        assert len(out.chunks) == (1 if workers == 1 else 4)
        report = tmp_path / f"r{workers}.json"
        from llmops.data.report import write_report
        write_report(out, report)
        out.cleanup()
        data = json.loads(report.read_text())
        results.append((data["num_samples"], data["num_errors"], data["problems"]))
    assert results[0] == results[1]
    problems = results[0][2]
    broken = [i + 1 for i, line in enumerate(out_lines) if line.startswith('{"prompt": "broken')]
    assert [p["line"] for p in problems if p["check"] == "json"] == broken
    dups = [i + 1 for i, line in enumerate(out_lines) if '"dup"' in line]
    assert [p["line"] for p in problems if p["check"] == "duplicates"] == dups[1:]
    assert all(f"line {dups[0]}" in p["message"] for p in problems if p["check"] == "duplicates")


def test_empty_paths_nested_and_flat():
    assert checks.empty_paths({"a": "x", "b": 1}) == []
    assert checks.empty_paths({"a": " \n", "b": "x"}) == ["$.a"]
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}], "meta": {"k": ""}}
    assert checks.empty_paths(row) == ["$.messages[1].content", "$.meta.k"]


def test_pii_shapes_are_found_and_redacted():
    row = {"t": "write to a.b@example.co.uk or 8.8.8.8, key AKIAIOSFODNN7EXAMPLE, sk-" + "x" * 30,
           "u": "version 1.2 at 127.0.0.1 is fine, so is 300.1.1.1"}
    found = checks.scan_pii(row)
    kinds = [k for _, k, _ in found]
    assert kinds == ["email", "ipv4", "aws_key", "openai_key"]
    assert all("*" in shown and "EXAMPLE" not in shown for _, _, shown in found)


def test_eval_index_exact_and_ngram():
    index = checks.EvalIndex(n=5)
    index.add({"prompt": "What is the capital of France?", "reference": "Paris"}, "eval.jsonl:1")
    assert index.match({"prompt": "what is the  capital of France?"}, "")[0] == "exact"
    hit = index.match({"prompt": "q"}, "Tell me: what is THE capital of, France please")
    assert hit[0] == "ngram" and "what is the capital of" in hit[2]
    assert index.match({"prompt": "q"}, "what is a capital of France") is None


def test_option_checks():
    with pytest.raises(UsageError, match="must be off, warning or error"):
        V._check_options(V.Options(inputs=["x"], pii="maybe"))
    with pytest.raises(UsageError, match="below min-samples"):
        V._check_options(V.Options(inputs=["x"], min_samples=5, max_samples=2))


def test_parse_problem_messages():
    assert "invalid UTF-8 at byte 3" in scan.parse_problem(b'{"\xff', False).message
    assert "truncated last line" in scan.parse_problem(b'{"a": ', True).message
    assert "malformed JSON" in scan.parse_problem(b'{"a": }', False).message
    assert "not strict JSON" in scan.parse_problem(b'{"a": NaN}', False).message


def test_benchmark_smoke_run(tmp_path):
    """benchmarks/validate_data.py at a tiny size: it runs and prints the ratios (numbers are not asserted)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "validate_data.py"), "--rows", "2000",
                           "--seed-rows", "100", "--repeat", "1"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(root)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ours/floor" in proc.stdout and "ours/seed" in proc.stdout and "peak RSS" in proc.stdout
