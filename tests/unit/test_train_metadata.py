"""read_model_metadata: what evaluate/serve/promote get from a trained folder, and the errors they show."""
from __future__ import annotations

import json

import pytest

from llmops.errors import InputError
from llmops.train import checkpoints
from llmops.train.metadata import FILE, read_model_metadata, write_model_metadata


def _meta(**over):
    meta = {"model_version": "abc123", "base_model": "org/base", "weights": "full", "created_at": "2026-01-01T00:00:00",
            "format": "chat", "dataset": {"files": [], "rows": 3}, "config": {"lora": False},
            "metrics": {"train_loss": 1.5, "eval_loss": None, "steps": 10, "tokens_seen": 1000},
            "libraries": {"torch": "2"}, "hardware": {"device": "cpu"}}
    meta.update(over)
    return meta


def _folder(tmp_path, files=("config.json", "model.safetensors"), **over):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("x")
    write_model_metadata(folder, _meta(**over))
    return folder


def test_round_trip(tmp_path):
    meta = read_model_metadata(_folder(tmp_path))
    assert meta["model_version"] == "abc123" and meta["schema_version"] == 1
    assert meta["metrics"]["train_loss"] == 1.5


def test_adapter_folders_need_the_adapter_weights(tmp_path):
    folder = _folder(tmp_path, files=("adapter_model.safetensors",), weights="adapter")
    assert read_model_metadata(folder)["weights"] == "adapter"
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match="adapter_model.safetensors is missing"):
        read_model_metadata(folder)


def test_missing_folder_points_at_an_unfinished_run(tmp_path):
    (tmp_path / "m.partial").mkdir()
    with pytest.raises(InputError) as err:
        read_model_metadata(tmp_path / "m")
    assert "did not finish" in err.value.hint
    with pytest.raises(InputError, match="model folder not found"):
        read_model_metadata(tmp_path / "other")


def test_a_folder_without_metadata_is_named(tmp_path):
    with pytest.raises(InputError, match=f"has no {FILE}"):
        read_model_metadata(tmp_path)


def test_malformed_and_incomplete_metadata(tmp_path):
    folder = _folder(tmp_path)
    (folder / FILE).write_text('{"model_version": "x",\n oops}')
    with pytest.raises(InputError) as err:
        read_model_metadata(folder)
    assert err.value.line == 2
    bad = _meta(schema_version=1)
    del bad["base_model"]
    bad["metrics"] = "high"
    (folder / FILE).write_text(json.dumps(bad))
    with pytest.raises(InputError, match="missing base_model; metrics should be dict"):
        read_model_metadata(folder)


def test_weights_deleted_after_training_are_noticed(tmp_path):
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"\*.safetensors is missing"):
        read_model_metadata(folder)


def test_latest_checkpoint_ignores_half_written_ones(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False)):
        d = checkpoints.step_dir(tmp_path, step)
        d.mkdir()
        if complete:
            (d / checkpoints.STATE_FILE).write_text("{}")
    (tmp_path / ".step-00000016.tmp").mkdir()
    assert checkpoints.latest(tmp_path).name == "step-00000008"
    assert checkpoints.resolve("latest", tmp_path / "none") is None
    with pytest.raises(InputError, match="not a complete checkpoint"):
        checkpoints.resolve(str(checkpoints.step_dir(tmp_path, 12)), tmp_path)
    assert [p.name for p in checkpoints.rotate(tmp_path, keep=1)] == ["step-00000004"]
