"""Parquet, Arrow IPC, datasets save_to_disk folders, CSV/TSV, .jsonl.zst and hf://datasets/ inputs, on real files
written by pyarrow and datasets: validate-data (through the CLI where the exit code matters), --write-clean, and
the same reader in train and evaluate-and-gate."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmops.data.validate import Options, validate
from tests.unit.test_validate_cli import problems, run, write_jsonl

ROWS = [{"prompt": f"What is {i} plus {i}?", "completion": f" {2 * i}"} for i in range(12)]
CHATS = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
         for i in range(6)]


def parquet(path: Path, rows, **kw) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


def check(*inputs, **kw):
    out = validate(Options(inputs=[str(p) for p in inputs], **kw))
    try:
        from llmops.data.report import header, write_report

        report = json.loads(write_report(out, Path(out.tmpdir) / "r.json").read_text())
        return out, header(out), report["problems"]
    finally:
        out.cleanup()


def test_parquet_problems_name_row_and_row_group_and_match_jsonl_duplicates(tmp_path):
    bad = ROWS + [dict(ROWS[1]), {"prompt": "  \n", "completion": "x"}, {"prompt": None, "completion": "y"},
                  {"prompt": "What  is 3 plus\n3?", "completion": " 6"}]
    path = parquet(tmp_path / "train.parquet", bad, row_group_size=5)
    _, head, probs = check(path)
    assert head["file_formats"] == ["parquet"] and head["num_samples"] == 16
    where = {(p["check"], p["row"], p["row_group"]) for p in probs}
    assert where == {("duplicates", 12, 2), ("empty-fields", 13, 2), ("format", 14, 2), ("duplicates", 15, 3)}
    assert all(p["line"] is None and p["file"] == str(path) for p in probs)
    assert "exact duplicate of row 3" in next(p["message"] for p in probs if p["row"] == 15)
    # the columnar key equals the JSONL key: the same rows in a JSONL file are duplicates across the two files
    jsonl = write_jsonl(tmp_path / "a.jsonl", ROWS[:3])
    _, _, probs = check(jsonl, parquet(tmp_path / "b.parquet", ROWS[:3]))
    assert [(p["row"], p["message"].split(" (")[0]) for p in probs] == [
        (i, f"exact duplicate of {jsonl}:{i + 1}") for i in range(3)]


def test_wrong_column_type_is_one_error_naming_file_column_and_fix(tmp_path):
    path = parquet(tmp_path / "ints.parquet", [{"prompt": i, "completion": "x"} for i in range(500)])
    proc, report = run(tmp_path, "--input", str(path), "--format", "prompt-completion")
    assert proc.returncode == 1
    fmt = problems(report, "format")
    assert len(fmt) == 1 and fmt[0]["file"] == str(path) and "row" not in fmt[0]
    assert "column 'prompt' is int64" in fmt[0]["message"] and "expects text (string)" in fmt[0]["message"]
    assert "astype(str)" in fmt[0]["message"] and report["num_errors"] == 500


def test_missing_column_corrupt_footer_and_empty_row_group(tmp_path):
    missing = parquet(tmp_path / "m.parquet", [{"question": "q", "completion": "a"}])
    proc, report = run(tmp_path, "--input", str(missing), "--format", "prompt-completion")
    assert proc.returncode == 1 and "column 'prompt' is missing" in problems(report, "format")[0]["message"]
    good = parquet(tmp_path / "g.parquet", ROWS)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-12])
    proc, report = run(tmp_path, "--input", str(cut))
    assert proc.returncode == 2 and report is None
    assert "cut.parquet: cannot read as parquet" in proc.stdout and "re-export it" in proc.stdout
    table = pa.Table.from_pylist(ROWS)
    with pq.ParquetWriter(tmp_path / "e.parquet", table.schema) as w:
        w.write_table(table.slice(0, 3))
        w.write_table(table.slice(0, 0))  # an empty row group
        w.write_table(pa.Table.from_pylist([{"prompt": "", "completion": "x"}], schema=table.schema))
    _, head, probs = check(tmp_path / "e.parquet")
    assert head["num_samples"] == 4 and [(p["row"], p["row_group"]) for p in probs] == [(3, 2)]
    pq.write_table(table.slice(0, 0), tmp_path / "none.parquet")
    proc, _ = run(tmp_path, "--input", str(tmp_path / "none.parquet"))
    assert proc.returncode == 2 and "has no rows" in proc.stdout


def test_corrupt_page_mid_file_names_the_row_group_and_stops_the_reader(tmp_path):
    """A page that cannot be decoded in the second row group (the read-ahead thread meets it) is exit 2 naming the
    first row and the row group it could not read; no reader thread is left behind."""
    import threading
    import time

    from llmops.data.sources import Source, Table
    from llmops.errors import InputError

    rows = [{"prompt": f"What is {i}?", "completion": f"{i}"} for i in range(300)]
    path = parquet(tmp_path / "p.parquet", rows, row_group_size=100, compression="none")
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset:offset + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    proc, report = run(tmp_path, "--input", str(path))
    assert proc.returncode == 2 and report is None
    assert "p.parquet: cannot read as parquet (row 100, row group 1)" in proc.stdout and "re-export" in proc.stdout
    def readers_gone() -> bool:
        deadline = time.monotonic() + 5
        while any(t.name == "read-ahead" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not any(t.name == "read-ahead" for t in threading.enumerate())

    with pytest.raises(InputError, match="row group 1"):
        validate(Options(inputs=[str(path)], workers=1))
    assert readers_gone()
    good = parquet(tmp_path / "g.parquet", rows * 40, row_group_size=100)
    batches = Table(Source(str(good), "parquet")).batches()
    assert next(batches)[0] == 0
    batches.close()  # a caller that stops early (an error in the first rows) stops the decoding thread
    assert readers_gone()


def test_nested_chat_column_and_datasets_folders(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    rows = CHATS + [{"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "u"}]}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    out, head, probs = check(tmp_path / "ds")
    assert out.fmt == "chat" and head["file_formats"] == ["datasets"]
    assert [(p["row"], p["path"]) for p in probs if p["check"] == "format"][0] == (6, "$.messages[0].role")
    dd = datasets.DatasetDict(train=datasets.Dataset.from_list(CHATS), test=datasets.Dataset.from_list(CHATS[:2]))
    dd.save_to_disk(str(tmp_path / "dd"))
    proc, _ = run(tmp_path, "--input", str(tmp_path / "dd"))
    assert proc.returncode == 2 and "DatasetDict folder with the splits test, train" in proc.stdout
    _, head, _ = check(tmp_path / "dd" / "train")
    assert head["result"] == "pass" and head["num_samples"] == 6


def test_save_to_disk_shards_read_directly_match_load_from_disk(tmp_path):
    """A plain save_to_disk folder is read from its Arrow files (no datasets import); the same folder with a
    state.json the direct reader does not know goes through datasets.load_from_disk; both give the same rows,
    row numbers and duplicates."""
    import datasets

    from llmops.data.sources import Source, Table, _saved_arrow_files

    datasets.disable_progress_bars()
    rows = ROWS * 30 + [{"prompt": "  ", "completion": "x"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"), num_shards=3)
    assert len(_saved_arrow_files(str(tmp_path / "ds"))[0]) == 3
    direct = check(tmp_path / "ds")
    state = json.loads((tmp_path / "ds" / "state.json").read_text())
    (tmp_path / "ds" / "state.json").write_text(json.dumps(dict(state, _indexes={})))
    assert _saved_arrow_files(str(tmp_path / "ds")) is None
    via_datasets = check(tmp_path / "ds")
    assert direct[1]["stats"] == via_datasets[1]["stats"] and direct[2] == via_datasets[2]
    assert direct[1]["stats"]["duplicates"]["duplicates"] == len(rows) - 1 - len(ROWS)
    assert [p["row"] for p in direct[2] if p["check"] == "empty-fields"] == [len(rows) - 1]
    assert sum(b.num_rows for _, _, b in Table(Source(str(tmp_path / "ds"), "datasets")).batches()) == len(rows)


def test_arrow_csv_tsv_zst_and_mixed_inputs(tmp_path):
    import zstandard

    table = pa.Table.from_pylist(ROWS[:4])
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as fh, pa.ipc.new_stream(fh, table.schema) as w:
        w.write_table(table)
    (tmp_path / "b.csv").write_text('prompt,completion\n"multi\nline",1\n,x\n', encoding="utf-8")
    (tmp_path / "c.tsv").write_text("prompt\tcompletion\nq\ta\n", encoding="utf-8")
    (tmp_path / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        b"".join(json.dumps(r).encode() + b"\n" for r in ROWS[4:6]) + b"{bad\n"))
    _, head, probs = check(tmp_path / "a.arrow", f"{tmp_path / 'b.csv'},{tmp_path / 'c.tsv'}", tmp_path / "d.jsonl.zst")
    assert head["file_formats"] == ["arrow", "csv", "tsv", "jsonl"] and head["num_samples"] == 10
    assert {(Path(p["file"]).name, p.get("row"), p["line"], p["check"]) for p in probs} == {
        ("b.csv", 1, None, "empty-fields"), ("d.jsonl.zst", None, 3, "json")}


def _hub_cache(root: Path, repo: str) -> Path:
    """The layout huggingface_hub writes: refs/main names a snapshot folder holding the repo's files."""
    folder = root / f"datasets--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / ("0" * 40)
    (snap / "data").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    parquet(snap / "data" / "train-00000.parquet", ROWS)
    parquet(snap / "data" / "test-00000.parquet", ROWS[:2])
    return snap


def test_hf_datasets_from_the_cache_offline(tmp_path):
    _hub_cache(tmp_path / "hub", "acme/qa")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}  # run() sets HF_HUB_OFFLINE=1
    proc, report = run(tmp_path, "--input", "hf://datasets/acme/qa", env=env)
    assert proc.returncode == 0, proc.stdout
    assert report["num_samples"] == 12 and report["files"][0].endswith("data/train-00000.parquet")
    proc, report = run(tmp_path, "--input", "hf://datasets/acme/qa/data/test-*.parquet", env=env)
    assert proc.returncode == 0 and report["num_samples"] == 2
    proc, _ = run(tmp_path, "--input", "hf://datasets/acme/missing", env=env)
    assert proc.returncode == 2 and "is not in the Hugging Face cache" in proc.stdout
    assert "huggingface-cli download --repo-type dataset acme/missing" in proc.stdout


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst", ".parquet"])
def test_write_clean_keeps_passing_rows_and_train_records_its_hash(tmp_path, suffix):
    from llmops.train.data import read_rows

    rows = ROWS + [dict(ROWS[0]), {"prompt": "", "completion": "x"}]
    src = parquet(tmp_path / "in.parquet", rows) if suffix == ".parquet" else write_jsonl(tmp_path / "in.jsonl", rows)
    clean = tmp_path / f"clean{suffix}"
    proc, report = run(tmp_path, "--input", str(src), "--write-clean", str(clean))
    assert proc.returncode == 1  # the empty prompt is an error; the clean file holds the rows that passed
    assert report["clean"]["rows"] == 12 and f"clean-sha256={report['clean']['sha256']}" in proc.stdout
    got, info = read_rows(str(clean), "auto")
    assert [r for _, r in got] == ROWS
    assert info.files[0]["sha256"] == report["clean"]["sha256"]
    if suffix == ".jsonl":
        assert clean.read_text().splitlines() == [json.dumps(r) for r in ROWS]


def test_write_clean_refuses_inputs_and_the_wrong_format(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    before = src.read_bytes()
    proc, _ = run(tmp_path, "--input", str(src), "--write-clean", str(src))
    assert proc.returncode == 2 and "would overwrite an input" in proc.stdout and src.read_bytes() == before
    proc, _ = run(tmp_path, "--input", str(src), "--write-clean", str(tmp_path / "x.parquet"))
    assert proc.returncode == 2 and "written as JSONL" in proc.stdout


def test_train_and_eval_read_parquet_through_the_same_reader(tmp_path):
    from llmops.errors import InputError
    from llmops.eval.data import load_eval_data
    from llmops.train.data import read_rows

    path = parquet(tmp_path / "t.parquet", CHATS)
    rows, info = read_rows(str(path), "auto")
    assert info.format == "chat" and rows[0] == (f"{path} row 0 (row group 0)", CHATS[0])
    bad = parquet(tmp_path / "bad.parquet", [{"prompt": "p", "completion": 3}])
    with pytest.raises(InputError, match=r"bad.parquet row 0 \(row group 0\): \$.completion"):
        read_rows(str(bad), "prompt-completion")
    evals = parquet(tmp_path / "e.parquet", [{"prompt": "2+2?", "reference": "4"}, {"prompt": "x"}])
    with pytest.raises(InputError, match=r"e.parquet row 1 \(row group 0\): row has no reference"):
        load_eval_data(evals)
    data = load_eval_data(parquet(tmp_path / "ok.parquet", [{"prompt": "2+2?", "reference": "4"}]))
    assert data.samples[0].reference == "4" and data.rows == 1


def test_tables_and_big_jsonl_in_worker_processes(tmp_path):
    rows = ROWS * 3
    single = check(write_jsonl(tmp_path / "a.jsonl", rows), parquet(tmp_path / "b.parquet", rows), workers=1)
    pooled = check(tmp_path / "a.jsonl", tmp_path / "b.parquet", workers=2)
    assert pooled[1]["stats"] == single[1]["stats"] and pooled[2] == single[2]
    assert single[1]["stats"]["duplicates"]["duplicates"] == 2 * len(rows) - len(ROWS)  # every repeat, both files


def test_columnar_normalising_equals_the_row_normaliser():
    import random

    from llmops.data.checks import normalize
    from llmops.data.fastpath import arrow_normalized

    rnd = random.Random(1)
    alphabet = ["a", "b", " ", "\n", "\t", "é", "\x1c", "  ", "\u3000", "\r", "\x85", "~", "\x7f", "\x01", "\n\n",
                "\n ", "😀", "\u2028", "\xa0", "\u1680", "\u202f", "“", "、", "\u205f", "\x1f"]
    strs = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8))) for _ in range(5000)]
    ascii_only = [s for s in strs if s.isascii() and s.isprintable()]  # the fast path's own strings
    for arr in (pa.array(strs), pa.array(strs).slice(7, 3000), pa.array(strs, pa.large_string()),
                pa.array(ascii_only).slice(3), pa.array([s.replace("\t", "\n") for s in strs])):
        normed, wide = arrow_normalized(arr)
        texts = arr.to_pylist()
        assert normed.to_pylist() == [normalize(s) for s in texts]
        assert wide.tolist() == [i for i, s in enumerate(texts) if not s.isascii()]
