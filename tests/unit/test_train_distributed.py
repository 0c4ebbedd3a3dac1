"""Training in several CPU processes (gloo), as a user launches it: two processes train the same loss curve as one
with the same global batch, see every row once per epoch, write one model folder; checkpoints move between world
sizes; FSDP2 saves a full model the server and the gate load; two "machines" rendezvous on 127.0.0.1; a dead rank
stops the other with a clear error and no model folder.

Tolerance: the per-step losses of different world sizes agree to rel 1e-4 (measured: identical to 6 digits; the
difference is the order of float32 sums in the gradient all-reduce).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.errors import InputError, UsageError
from llmops.serve.generators import TransformersGenerator
from llmops.train import distributed
from llmops.train.metadata import read_model_metadata
from llmops.train.preflight import free_port
from tests.unit.test_serve import _server
from tests.unit.test_train_cli import ROOT, log_records, read_outputs, train

pytestmark = pytest.mark.slow
TOL = 1e-4
STEPS = 15  # 57 rows / 4 rows per step: the last step has one row, so the second process gets an empty micro-batch
COMMON = ["--max-seq-length", "64", "--learning-rate", "3e-3", "--lr-scheduler", "linear", "--warmup-steps", "2",
          "--logging-steps", "1", "--packing", "false", "--checkpoint-steps", "8", "--mixed-precision", "no"]
TWO = ["--launch", "--allow-cpu", "true", "--num-processes", "2", "--batch-size", "2"]
FSDP = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_processes: 2
mixed_precision: "no"
fsdp_config:
  fsdp_version: {version}
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_reshard_after_forward: true
"""


def losses(model_dir: Path) -> list[float]:
    return [r["loss"] for r in log_records(model_dir) if "loss" in r]


@pytest.fixture(scope="module")
def work(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    rows = (ROOT / "examples/data/train.jsonl").read_text().splitlines()[:57]
    (root / "data.jsonl").write_text("\n".join(rows) + "\n")
    (root / "fsdp2.yaml").write_text(FSDP.format(version=2))
    return root, ["--model_name", str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), *COMMON]


@pytest.fixture(scope="module")
def one(work):
    root, args = work
    proc = train(root, *args, "--output_dir", "one", "--batch-size", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "one"


@pytest.fixture(scope="module")
def two(work):
    root, args = work
    (root / "out.txt").unlink(missing_ok=True)
    proc = train(root, *args, *TWO, "--output_dir", "two")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc.outputs_text = (root / "out.txt").read_text()
    return root / "two", proc


def test_two_processes_train_the_curve_of_one_on_every_row_once(one, two):
    model, proc = two
    meta, single = read_model_metadata(model), read_model_metadata(one)
    assert meta["hardware"]["num_processes"] == 2 and meta["hardware"]["distributed_type"] == "MULTI_CPU"
    assert meta["config"]["samples_per_step"] == single["config"]["samples_per_step"] == 4
    assert meta["metrics"]["steps"] == single["metrics"]["steps"] == STEPS
    assert losses(model) == pytest.approx(losses(one), rel=TOL)
    assert losses(model)[-1] < 0.8 * losses(model)[0]
    # every row once: the tokens trained on are the data's tokens, not a row more or less
    assert meta["metrics"]["tokens_seen"] == meta["dataset"]["tokens"] == single["metrics"]["tokens_seen"]
    # one writer: one log line per step, one set of step outputs, the folder renamed once
    assert [r["step"] for r in log_records(model) if "loss" in r] == list(range(1, STEPS + 1))
    assert proc.outputs["model-dir"] == "two" and proc.outputs_text.count("result<<") == 1
    assert not (model.parent / "two.partial").exists()


@pytest.mark.parametrize("direction", ["two-to-one", "one-to-two"])
def test_a_checkpoint_resumes_at_another_world_size_with_the_same_global_batch(work, one, two, direction):
    root, args = work
    source = two[0] if direction == "two-to-one" else one
    launch = ["--batch-size", "4"] if direction == "two-to-one" else TWO
    out = f"resumed-{direction}"
    proc = train(root, *args, *launch, "--output_dir", out, "--checkpoint-dir", f"{source.name}.checkpoints",
                 "--resume-from-checkpoint", f"{source.name}.checkpoints/step-00000008")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "at step 8 of 15 (written by" in proc.stdout
    meta = read_model_metadata(root / out)
    assert meta["hardware"]["num_processes"] == (1 if direction == "two-to-one" else 2)
    assert losses(root / out) == pytest.approx(losses(source), rel=TOL)
    assert meta["metrics"]["tokens_seen"] == read_model_metadata(source)["metrics"]["tokens_seen"]


def test_a_different_global_batch_cannot_resume_and_says_which_does(work, one):
    root, args = work
    proc = train(root, *args, "--batch-size", "2", "--output_dir", "bad", "--checkpoint-dir",
                 "one.checkpoints", "--resume-from-checkpoint", "one.checkpoints/step-00000008")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "samples_per_step: checkpoint 4, now 2" in proc.stdout and "= 4 resumes it" in proc.stdout
    assert not (root / "bad").exists()


def test_fsdp2_on_cpu_trains_the_same_curve_and_saves_a_model_the_server_and_gate_load(work, one):
    root, args = work
    proc = train(root, *args, *TWO, "--accelerate-config", "fsdp2.yaml", "--output_dir", "fsdp",
                 "--model-version", "fsdp-v1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = root / "fsdp"
    meta = read_model_metadata(model)
    assert meta["hardware"]["distributed_type"] == "FSDP" and meta["hardware"]["num_processes"] == 2
    assert losses(model) == pytest.approx(losses(one), rel=TOL)
    from safetensors.torch import load_file

    full, single = load_file(model / "model.safetensors"), load_file(one / "model.safetensors")
    for name, tensor in single.items():  # the whole model, gathered from both shards, equal to the 1-process one
        assert tensor.shape == full[name].shape and (tensor - full[name]).abs().max() < 1e-4, name
    import requests

    server = _server(TransformersGenerator(model, device="cpu"), None).start()
    try:
        server.wait_ready(300)
        r = requests.post(server.url + "/v1/completions", json={"prompt": "What is two plus two?", "max_tokens": 3},
                          timeout=60)
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "fsdp-v1"
    finally:
        server.stop()
    gate = subprocess.run([sys.executable, str(ROOT / "scripts/evaluate_and_gate.py"), "--model-dir", str(model),
                           "--eval_data", str(ROOT / "examples/data/eval.jsonl"), "--metrics", "perplexity",
                           "--max-new-tokens", "2", "--report", "verdict.json"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert json.loads((root / "verdict.json").read_text())["model"]["version"] == "fsdp-v1"


@pytest.mark.parametrize("env, message", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "FSDP version 1 does not run on CPU"),
    ({"ACCELERATE_USE_FSDP": "true"}, "FSDP version 1 does not run on CPU"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed does not run on CPU"),
])
def test_modes_that_cannot_run_on_cpu_are_refused_with_the_fix(env, message):
    with pytest.raises(UsageError, match=message) as err:
        distributed.check_cpu_mode({"ACCELERATE_USE_CPU": "True", **env})
    assert "fsdp_version: 2" in err.value.hint
    distributed.check_cpu_mode(env)  # on GPUs accelerate runs them


# ---------------------------------------------------------------------------------------------- two machines
def machines(root: Path, args: list[str], extra: list[str]) -> list[subprocess.Popen]:
    """Two `--launch` runs as two machines' jobs would start them: own folder each, rendezvous on 127.0.0.1."""
    port, procs = free_port(), []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | {"PYTHONPATH": str(ROOT)}
    for rank in (0, 1):
        cwd = root / f"machine-{rank}"
        cwd.mkdir()
        cmd = [sys.executable, str(ROOT / "scripts/train.py"), *args, "--launch", "--allow-cpu", "true",
               "--num-processes", "1", "--num-machines", "2", "--machine-rank", str(rank), "--main-process-ip",
               "127.0.0.1", "--main-process-port", str(port), "--batch-size", "2", "--output_dir", "models/m",
               "--checkpoint-dir", str(root / "shared/checkpoints"), *extra]
        with open(root / f"machine-{rank}.log", "w") as log:
            procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                          env=env | {"GITHUB_OUTPUT": str(cwd / "out.txt")}))
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    import psutil

    for p in procs:
        if p.poll() is None:
            for child in psutil.Process(p.pid).children(recursive=True):  # torchrun starts workers in own sessions
                child.kill()
            p.kill()
            p.wait()


def test_two_machines_rendezvous_and_only_machine_0_writes_the_model(work, one, tmp_path):
    _, args = work
    procs = machines(tmp_path, args, [])
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        stop(procs)
    logs = [(tmp_path / f"machine-{r}.log").read_text() for r in (0, 1)]
    assert codes == [0, 0], logs
    assert "--num_machines 2 --machine_rank 1 --main_process_ip 127.0.0.1" in logs[1]
    model = tmp_path / "machine-0/models/m"
    meta = read_model_metadata(model)
    assert meta["hardware"]["num_processes"] == 2 and meta["hardware"]["num_machines"] == 2
    assert losses(model) == pytest.approx(losses(one), rel=TOL)
    assert meta["metrics"]["tokens_seen"] == meta["dataset"]["tokens"]
    assert not (tmp_path / "machine-1/models").exists()  # machine 1 wrote no model folder, not even a partial one
    assert read_outputs(tmp_path / "machine-0/out.txt")["result"] == "success"
    assert [p.name for p in (tmp_path / "shared/checkpoints").iterdir()] == ["step-00000008"]


def test_when_one_machine_s_rank_dies_both_fail_and_no_model_folder_appears(work, tmp_path):
    _, args = work
    import psutil

    procs = machines(tmp_path, args, ["--max-steps", "100000", "--checkpoint-steps", "3", "--distributed-timeout",
                                      "60"])
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "shared/checkpoints").glob("step-*")):  # both are training
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "training did not start"
            time.sleep(0.1)
        workers = [c for c in psutil.Process(procs[1].pid).children(recursive=True)
                   if "scripts/train.py" in " ".join(c.cmdline()) and "accelerate" not in " ".join(c.cmdline())]
        assert len(workers) == 1
        workers[0].kill()  # machine 1's training process dies (the OOM killer, a GPU fault)
        killed = time.monotonic()
        codes = [p.wait(timeout=120) for p in procs]
        took = time.monotonic() - killed
    finally:
        stop(procs)
    logs = [(tmp_path / f"machine-{r}.log").read_text() for r in (0, 1)]
    assert codes == [3, 3] and took < 60, logs
    assert "lost contact with another training process" in logs[0] and "resume-from-checkpoint: latest" in logs[0]
    assert "a training process ended without reporting" in logs[1]
    assert not (tmp_path / "machine-0/models/m").exists()
    assert not (tmp_path / "machine-0/models/m.partial/llmops-model.json").exists()
    with pytest.raises(InputError, match="did not finish"):
        read_model_metadata(tmp_path / "machine-0/models/m")


def test_a_rank_that_hangs_is_given_up_after_the_distributed_timeout(work, tmp_path):
    _, args = work
    import psutil

    procs = machines(tmp_path, args, ["--max-steps", "100000", "--checkpoint-steps", "3", "--distributed-timeout",
                                      "15"])
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "shared/checkpoints").glob("step-*")):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "training did not start"
            time.sleep(0.1)
        workers = [c for c in psutil.Process(procs[1].pid).children(recursive=True)
                   if "scripts/train.py" in " ".join(c.cmdline()) and "accelerate" not in " ".join(c.cmdline())]
        workers[0].suspend()  # machine 1's training process stops answering but keeps its connections open
        stopped = time.monotonic()
        code = procs[0].wait(timeout=120)
        took = time.monotonic() - stopped
    finally:
        stop(procs)
    log = (tmp_path / "machine-0.log").read_text()
    assert code == 3 and 10 < took < 75, log
    assert "lost contact with another training process" in log
    assert not (tmp_path / "machine-0/models/m").exists()
