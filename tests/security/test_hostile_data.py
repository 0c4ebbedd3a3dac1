"""validate-data (and the reader train and evaluate share) against hostile and careless data: bombs, endless
inputs, pipes, devices, deep nesting, wrong encodings, odd file names, remote schemas, PII in schema errors, and
the OpenAI chat fine-tuning format with tool calls. Each gets exit 1 or 2 with the fix, never a traceback, and
stays in bounded memory and time."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from tests.security.conftest import MB, ROOT, send

LIMIT = 300 * MB


def validate(runner, *inputs: str, extra: tuple[str, ...] = (), measure: bool = False, timeout: float = 60):
    return runner.run("validate_data.py", "--input", *inputs, "--report", str(runner.root / "report.json"), *extra,
                      measure=measure, timeout=timeout)


def gzip_bomb(path, gib: int = 3) -> None:
    """~3 MB on disk, ``gib`` GiB of one endless line when read: gzip members of 1 MiB of 'a', concatenated."""
    member = gzip.compress(b"a" * MB, compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(b'{"text": "'))
        for _ in range(gib * 1024):
            fh.write(member)


@pytest.mark.slow
def test_gzip_bomb_of_one_endless_line_is_refused_in_flat_memory(runner):
    bomb = runner.workspace / "bomb.jsonl.gz"
    gzip_bomb(bomb)
    assert bomb.stat().st_size < 4 * MB
    started = time.monotonic()
    res = validate(runner, str(bomb), measure=True)
    assert res.code == 2, res.log[-1500:]
    assert "bomb.jsonl.gz:1: line is longer than 64 MiB" in res.log and not res.traceback
    assert res.rss < LIMIT, f"peak RSS {res.rss / MB:.0f} MB"
    assert time.monotonic() - started < 30


def test_max_line_bytes_names_the_long_line(runner):
    data = runner.workspace / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "' + "x" * 5000 + '"}\n{"text": "c"}\n')
    res = validate(runner, str(data), extra=("--max-line-bytes", "1KiB"))
    assert res.code == 2 and "d.jsonl:3: line is longer than 1 KiB" in res.log, res.log
    assert validate(runner, str(data), extra=("--max-line-bytes", "64MiB")).code == 0


def test_dev_zero_is_refused_at_once(runner):
    res = validate(runner, "/dev/zero", timeout=20)
    assert res.code == 2 and "/dev/zero is a character device, not a regular file" in res.log, res.log


def test_fifo_is_refused_without_blocking(runner):
    fifo = runner.workspace / "data.jsonl"
    os.mkfifo(fifo)
    res = validate(runner, str(fifo), timeout=20)
    assert res.code == 2 and "is a FIFO (named pipe), not a regular file" in res.log, res.log


def test_train_and_evaluate_readers_refuse_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    code = ("import sys\nfrom llmops.errors import InputError\nfrom llmops.train.data import read_rows\n"
            "from llmops.eval.data import load_eval_data\n"
            "for call in (lambda: read_rows(sys.argv[1], None), lambda: load_eval_data(sys.argv[1])):\n"
            "    try:\n        call()\n    except InputError as exc:\n        print('refused:', exc.message)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.count("is a FIFO (named pipe), not a regular file") == 2, proc.stdout + proc.stderr


def test_deep_nesting_is_a_row_problem_not_a_traceback(runner):
    data = runner.workspace / "deep.jsonl"
    rows = ['{"text": "a", "x": ' + "[" * depth + "]" * depth + "}" for depth in (1000, 100_000)]
    data.write_text("\n".join(rows) + '\n{"text": "b"}\n')
    res = validate(runner, str(data))
    assert res.code == 1 and not res.traceback, res.log[-1500:]
    for line in (1, 2):
        assert f"file=deep.jsonl,line={line}" in res.log
    assert res.log.count("nested too deeply") == 2 and res.outputs["num-errors"] == "2"


def test_deep_nesting_in_eval_data_is_an_input_error(runner):
    data = runner.workspace / "eval.jsonl"
    data.write_text('{"prompt": "a", "reference": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    preds = runner.workspace / "p.jsonl"
    preds.write_text('{"prompt": "a", "prediction": "b"}\n')
    res = runner.run("evaluate_and_gate.py", "--predictions", str(preds), "--eval_data", str(data), "--metrics",
                     "accuracy")
    assert res.code == 2 and "eval.jsonl:1: JSON nested too deeply" in res.log and not res.traceback, res.log[-1500:]


@pytest.mark.parametrize("content, words", [
    ('{"text": "hi"}\n'.encode("utf-16"), "is UTF-16 text (little-endian byte order mark FF FE), not UTF-8"),
    ('{"text": "hi"}\n'.encode("utf-16-be"), "looks like UTF-16 text without a byte order mark"),
    ('{"text": "hi"}\n'.encode("utf-32"), "is UTF-32 text"),
    (bytes(range(256)) * 8, "is a binary file (it contains NUL bytes)"),
    (gzip.compress(b'{"text": "hi"}\n'), "is gzip-compressed, but its name does not end in .gz"),
], ids=["utf16-bom", "utf16-no-bom", "utf32", "binary", "gzip-without-gz"])
def test_encodings_are_named(runner, content, words):
    data = runner.workspace / "data.jsonl"
    data.write_bytes(content)
    res = validate(runner, str(data))
    assert res.code == 2 and words in res.log, res.log[-1500:]
    assert "no line parses as JSON" not in res.log


def test_whitespace_only_file_says_so(runner):
    data = runner.workspace / "blank.jsonl"
    data.write_text("  \n\n\t \n" * 2000)
    res = validate(runner, str(data))
    assert res.code == 2 and "holds only whitespace (blank lines), no rows" in res.log, res.log
    assert "cannot tell the data format" not in res.log


def test_symlink_loop_and_broken_link_are_named(runner):
    a, b, c = (runner.workspace / n for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    a.symlink_to(b)
    b.symlink_to(a)
    c.symlink_to(runner.workspace / "gone.jsonl")
    res = validate(runner, str(a))
    assert res.code == 2 and "is a symbolic link loop" in res.log, res.log
    res = validate(runner, str(c))
    assert res.code == 2 and "is a broken symbolic link" in res.log, res.log


def test_comma_in_a_file_name(runner):
    data = runner.workspace / "a,b.jsonl"
    data.write_text('{"text": "one"}\n{"text": "two"}\n')
    res = validate(runner, str(data))
    assert res.code == 0, res.log
    assert res.outputs["num-samples"] == "2"


TOOL_ROWS = [
    {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}],
     "parallel_tool_calls": False,
     "messages": [{"role": "system", "content": "You are helpful."},
                  {"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "weight": 0, "tool_calls": [
                      {"id": "call_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
                  {"role": "assistant", "content": "Sunny and 21 C.", "weight": 1}]},
    {"functions": [{"name": "add", "parameters": {"type": "object"}}],
     "messages": [{"role": "user", "content": "1+2?"},
                  {"role": "assistant", "function_call": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
                  {"role": "function", "name": "add", "content": "3"},
                  {"role": "assistant", "content": "3"}]},
]


def test_openai_chat_fine_tuning_format_with_tool_calls_passes(runner):
    data = runner.workspace / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TOOL_ROWS))
    res = validate(runner, str(data))
    assert res.code == 0, res.log[-2000:]
    assert validate(runner, str(data), extra=("--format", "chat")).code == 0


BAD_TOOL_ROWS = [
    (lambda r: r["messages"][3].pop("tool_call_id"), "a tool message needs the tool_call_id"),
    (lambda r: r["messages"][4].update(weight=0), "every assistant message has weight 0"),
    (lambda r: r["messages"][1].update(weight=1), "weight goes on assistant messages only"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments="{not json"), "arguments is not valid"),
    (lambda r: r["tools"][0]["function"].update(name="has space"), "the function name must be"),
    (lambda r: r["messages"][3].update(tool_call_id="call_9"), "no earlier tool call has the id 'call_9'"),
]


def test_bad_tool_call_rows_are_explained(runner):
    rows = []
    for mutate, _ in BAD_TOOL_ROWS:
        row = json.loads(json.dumps(TOOL_ROWS[0]))
        mutate(row)
        rows.append(json.dumps(row) + "\n")
    data = runner.workspace / "tools.jsonl"
    data.write_text("".join(rows))
    res = validate(runner, str(data), extra=("--min-samples", "0"))
    assert res.code == 1 and res.outputs["num-errors"] == str(len(rows)), res.log[-2000:]
    for line, (_, words) in enumerate(BAD_TOOL_ROWS, 1):
        assert any(f"line={line}," in x and words in x for x in res.log.splitlines()), (line, words)


def test_schema_errors_redact_values(runner):
    schema = runner.workspace / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"user_id": {"type": "integer"},
                                                                   "text": {"type": "string", "maxLength": 5}}}))
    data = runner.workspace / "d.jsonl"
    data.write_text(json.dumps({"user_id": "jane.doe@example.com", "text": "call 555-0100 now"}) + "\n")
    res = validate(runner, str(data), extra=("--schema", str(schema)))
    assert res.code == 1, res.log
    report = (runner.root / "report.json").read_text()
    for secret in ("jane.doe@example.com", "call 555-0100 now"):
        assert secret not in res.log and secret not in res.summary and secret not in report
    assert "is not of type" in res.log and "characters" in res.log


@pytest.mark.parametrize("key", ["$schema", "$ref"])
def test_remote_schema_references_are_errors_and_nothing_is_fetched(runner, hostile, key):
    hits = []
    url = hostile(lambda req: (hits.append(req.path), send(req, 404, b"{}")))
    doc = {"$schema": f"{url}/meta"} if key == "$schema" else {"properties": {"a": {"$ref": f"{url}/a.json"}}}
    schema = runner.workspace / "schema.json"
    schema.write_text(json.dumps({"type": "object", **doc}))
    data = runner.workspace / "d.jsonl"
    data.write_text('{"a": 1}\n')
    res = validate(runner, str(data), extra=("--schema", str(schema)))
    assert res.code == 2 and f"'{key}' at $" in res.log and "no network" in res.log, res.log
    assert hits == []


def test_report_pointing_at_the_input_is_refused(runner):
    data = runner.workspace / "d.jsonl"
    data.write_text('{"text": "keep me"}\n')
    before = data.read_bytes()
    res = runner.run("validate_data.py", "--input", str(data), "--report", str(data))
    assert res.code == 2 and "would overwrite an input" in res.log, res.log
    link = runner.workspace / "alias.json"
    link.symlink_to(data)
    res = runner.run("validate_data.py", "--input", str(data), "--report", str(link))
    assert res.code == 2 and "would overwrite an input" in res.log, res.log
    assert data.read_bytes() == before


def test_schema_that_is_a_fifo_is_refused_without_blocking(runner):
    fifo = runner.workspace / "schema.json"
    os.mkfifo(fifo)
    data = runner.workspace / "d.jsonl"
    data.write_text('{"a": 1}\n')
    res = validate(runner, str(data), extra=("--schema", str(fifo)), timeout=20)
    assert res.code == 2 and "schema: " in res.log and "is a FIFO (named pipe)" in res.log, res.log
