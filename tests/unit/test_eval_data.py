"""Eval rows -> samples: reference keys, chat rows, stable ids, sub-sampling, predictions matching."""
from __future__ import annotations

import json

import pytest

from llmops.errors import InputError
from llmops.eval.data import load_eval_data, load_predictions


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reference_keys_chat_rows_and_ids(tmp_path):
    path = write(tmp_path / "e.jsonl", [
        {"prompt": "a", "reference": "x"}, {"prompt": "b", "completion": "y"}, {"prompt": "c", "answer": 8},
        {"id": "chat-1", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "hello"}]},
        {"prompt": "a", "reference": "x again"},
    ])
    data = load_eval_data(path)
    assert [s.reference for s in data.samples] == ["x", "y", "8", "hello", "x again"]
    chat = data.samples[3]
    assert chat.id == "chat-1" and chat.messages == [{"role": "system", "content": "s"},
                                                     {"role": "user", "content": "hi"}]
    assert data.samples[4].id == data.samples[0].id + "#2"  # same prompt twice: still distinct samples
    assert data.hash == load_eval_data(path).hash


@pytest.mark.parametrize("row, message", [
    ({"prompt": "a"}, "e.jsonl:1: row has no reference"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "e.jsonl:1: chat row has no reference"),
    ({"text": "a"}, "e.jsonl:1: row has no 'prompt' string"),
    ({"prompt": "a", "reference": ["x", "y"]}, "'reference' must be a string"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "e.jsonl", [row])
    with pytest.raises(InputError, match=message) as err:
        load_eval_data(path)
    assert err.value.line == 1 and err.value.file.endswith("e.jsonl")


def test_sub_sampling_is_seeded_and_stable_when_rows_are_added(tmp_path):
    rows = [{"prompt": f"q{i}", "reference": "r"} for i in range(200)]
    small = load_eval_data(write(tmp_path / "a.jsonl", rows), sample_size=50, seed=1)
    again = load_eval_data(write(tmp_path / "b.jsonl", rows[::-1]), sample_size=50, seed=1)
    more = load_eval_data(write(tmp_path / "c.jsonl", rows + [{"prompt": f"n{i}", "reference": "r"}
                                                             for i in range(20)]), sample_size=50, seed=1)
    ids = {s.id for s in small.samples}
    assert len(small) == 50 and small.rows == 200
    assert {s.id for s in again.samples} == ids  # order of rows does not matter
    assert len(ids & {s.id for s in more.samples}) >= 40  # adding rows keeps most of the subset
    assert {s.id for s in load_eval_data(tmp_path / "a.jsonl", sample_size=50, seed=2).samples} != ids


def test_predictions_match_by_id_or_prompt(tmp_path):
    data = load_eval_data(write(tmp_path / "e.jsonl", [{"id": "x1", "prompt": "a", "reference": "r"},
                                                       {"prompt": "b", "reference": "s"}]))
    preds = load_predictions(write(tmp_path / "p.jsonl", [{"prompt": "b", "output": "S", "latency_s": 0.5},
                                                          {"id": "x1", "prediction": "R"}]), data.samples)
    assert [p["prediction"] for p in preds] == ["R", "S"] and preds[1]["latency_s"] == 0.5
    with pytest.raises(InputError, match="p2.jsonl:1: 'latency_s' must be a non-negative number"):
        load_predictions(write(tmp_path / "p2.jsonl", [{"id": "x1", "prediction": "R", "latency_s": "fast"}]),
                         data.samples)
