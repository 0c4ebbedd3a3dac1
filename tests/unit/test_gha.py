"""Runner I/O: what a workflow sees of our outputs, annotations, summaries and input parsing."""
from __future__ import annotations

import argparse

import pytest

from llmops import gha, redact
from llmops.errors import UsageError


def test_multiline_output_round_trips(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    gha.set_output("report", "line1\nline2")
    gha.set_output("ok", True)
    text = out.read_text()
    name, rest = text.split("<<", 1)
    delim, body = rest.split("\n", 1)
    assert name == "report" and body.startswith(f"line1\nline2\n{delim}\n")
    assert "ok<<" in text and "\ntrue\n" in text


def test_outside_a_runner_output_is_printed(capsys):
    gha.set_output("num-samples", 3)
    assert capsys.readouterr().out == "output num-samples=3\n"


def test_annotation_escapes_and_caps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "o"))
    notes = gha.Annotations(limit=2)
    for i in range(5):
        notes.add("error", f"bad row {i}\n100%", file="data/a,b.jsonl", line=i + 1)
    notes.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "::error file=data/a%2Cb.jsonl,line=1::bad row 0%0A100%25"
    assert len(lines) == 3 and "3 more problems" in lines[2]


def test_summary_table_written_to_step_summary(tmp_path, monkeypatch):
    path = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    gha.Summary().heading("Data").table(["check", "count"], [["a|b", 1]]).xychart("loss", [1, 2], {"l": [2, 1]}).write()
    text = path.read_text()
    assert "| a\\|b | 1 |" in text and "xychart-beta" in text and "line [2, 1]" in text


def test_mask_only_in_runner(tmp_path, monkeypatch, capsys):
    gha.mask("secret")
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "o"))
    gha.mask("s1\ns2")
    assert capsys.readouterr().out == "::add-mask::s1\n::add-mask::s2\n"


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--input", nargs="+", required=True)
    p.add_argument("--min-samples", type=int, default=0)
    p.add_argument("--dedup", action="store_true")
    p.add_argument("--mode", choices=["a", "b"], default="a")
    return p


def test_inputs_come_from_env_when_flags_are_absent(monkeypatch):
    monkeypatch.setenv("INPUT_INPUT", "a.jsonl\nb.jsonl")
    monkeypatch.setenv("INPUT_MIN_SAMPLES", "10")
    monkeypatch.setenv("INPUT_DEDUP", "true")
    args = gha.parse_args(_parser(), [])
    assert args.input == ["a.jsonl", "b.jsonl"] and args.min_samples == 10 and args.dedup is True
    args = gha.parse_args(_parser(), ["--min-samples", "3"])
    assert args.min_samples == 3


@pytest.mark.parametrize("var, value, words", [
    ("INPUT_DEDUP", "yes", "true or false"),
    ("INPUT_MIN_SAMPLES", "ten", "min-samples"),
    ("INPUT_MODE", "c", "one of a, b"),
])
def test_bad_inputs_are_usage_errors(monkeypatch, var, value, words):
    monkeypatch.setenv("INPUT_INPUT", "x")
    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError, match=words):
        gha.parse_args(_parser(), [])


def test_parse_number_bounds():
    assert gha.parse_number("alpha", "0.05", minimum=0, maximum=1) == 0.05
    with pytest.raises(UsageError, match="<= 1"):
        gha.parse_number("alpha", "2", maximum=1)


def test_masked_values_are_scrubbed_from_outputs_and_summaries(tmp_path, monkeypatch, capsys):
    out, summary = tmp_path / "out", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setattr(redact, "_SECRETS", set())
    gha.mask("tok-0123456789")
    gha.mask("pass")  # too short to scrub from files: it is also a word ("result pass")
    gha.set_output("reason", "server said: bad token tok-0123456789")
    gha.set_output("result", "pass")
    gha.Summary().text("echoed tok-0123456789").write()
    gha.error("denied for tok-0123456789")
    text = out.read_text() + summary.read_text() + capsys.readouterr().out.replace("::add-mask::tok-0123456789", "")
    assert "tok-0123456789" not in text and "bad token ***" in text and "\npass\n" in out.read_text()
