"""GPU runner preflight (nvidia-smi output from fixtures, a fake nvidia-smi on PATH) and the launch command."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.train import launch, preflight

ROOT = Path(__file__).resolve().parents[2]
GPUS = ("0, NVIDIA A100-SXM4-80GB, GPU-aaaa-1111, 81920, 1024, 80896\n"
        "1, NVIDIA A100-SXM4-80GB, GPU-bbbb-2222, 81920, 70000, 11920\n")
APPS = "GPU-bbbb-2222, 4242, /usr/bin/python3, 69000\n"


def _fake_smi(tmp_path: Path, gpus: str = GPUS, apps: str = "", code: int = 0) -> Path:
    (tmp_path / "gpus.csv").write_text(gpus)
    (tmp_path / "apps.csv").write_text(apps)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir(exist_ok=True)
    smi.write_text(f"""#!/bin/sh
[ {code} -ne 0 ] && {{ echo "Failed to initialize NVML: Driver/library version mismatch" >&2; exit {code}; }}
case "$1" in --query-gpu=*) cat "{tmp_path}/gpus.csv";; *) cat "{tmp_path}/apps.csv";; esac
""")
    smi.chmod(0o755)
    return smi


def test_parse_nvidia_smi_csv():
    gpus = preflight.parse_gpus(GPUS)
    assert [(g.index, g.free_mib) for g in gpus] == [(0, 80896), (1, 11920)]
    assert gpus[0].name == "NVIDIA A100-SXM4-80GB"
    (proc,) = preflight.parse_processes(APPS + "No running processes found\n")
    assert (proc.pid, proc.used_mib, proc.gpu_uuid) == (4242, 69000, "GPU-bbbb-2222")
    assert preflight.parse_processes("1, 2, x, [N/A]\n")[0].used_mib is None


def test_stray_processes_low_memory_and_too_few_gpus_are_reported():
    gpus, procs = preflight.parse_gpus(GPUS), preflight.parse_processes(APPS)
    found = preflight.check_gpus(gpus, procs, expected=4, min_free_gib=20)
    text = " | ".join(f.message for f in found)
    assert "4 training processes need 4 GPUs, but only 2" in text
    assert "GPU 1 (NVIDIA A100-SXM4-80GB) has 11920 MiB free" in text
    assert "pid 4242 /usr/bin/python3 on GPU 1 holding 69000 MiB" in text
    assert all(f.level == "error" and f.hint for f in found)
    assert preflight.check_gpus(gpus[:1], procs, expected=1, min_free_gib=20) == []


def test_cuda_visible_devices_limits_the_checked_gpus():
    gpus = preflight.parse_gpus(GPUS)
    assert [g.index for g in preflight.visible(gpus, "1")] == [1]
    assert [g.index for g in preflight.visible(gpus, "GPU-aaaa-1111")] == [0]
    assert preflight.visible(gpus, "") == []
    assert preflight.visible(gpus, None) == gpus


def test_busy_port_and_stale_accelerate_config(tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        problem = preflight.check_port(s.getsockname()[1])
    assert problem and "is not free" in problem.message
    assert preflight.check_port(preflight.free_port()) is None
    (tmp_path / "accelerate").mkdir()
    (tmp_path / "accelerate" / "default_config.yaml").write_text("num_processes: 8\n")
    found = preflight.check_environment({"HF_HOME": str(tmp_path), "ACCELERATE_MIXED_PRECISION": "fp16"})
    assert "default_config.yaml exists" in found[0].message and "ignored" in found[0].message
    assert found[1].level == "warning" and "ACCELERATE_MIXED_PRECISION=fp16" in found[1].message


def test_run_preflight_with_a_fake_nvidia_smi(tmp_path):
    smi = _fake_smi(tmp_path, apps=APPS)
    result = preflight.run_preflight(smi=str(smi), expected_gpus=2, min_free_gib=1, env={})
    assert len(result.gpus) == 2 and [e.message for e in result.errors if "pid 4242" in e.message]
    result = preflight.run_preflight(smi=str(smi), expected_gpus=1, min_free_gib=1, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.errors == []


def test_missing_or_broken_nvidia_smi(tmp_path):
    result = preflight.run_preflight(smi=str(tmp_path / "nope"), env={})
    assert "not found" in result.errors[0].message and "allow-cpu" in result.errors[0].hint
    result = preflight.run_preflight(smi=str(_fake_smi(tmp_path, code=9)), env={})
    assert "version mismatch" in result.errors[0].message
    result = preflight.run_preflight(smi=str(tmp_path / "nope"), allow_cpu=True, env={})
    assert result.errors == [] and "GPU checks skipped" in result.findings[-1].message


def _cli(tmp_path, *extra, path_prefix=""):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": path_prefix + os.environ["PATH"],
           "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, str(ROOT / "scripts/train.py"), "--preflight-only", "--model_name", "m",
                           "--dataset", "d.jsonl", "--output_dir", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, env=env, timeout=120)


def test_preflight_only_cli_fails_on_a_stray_process_and_passes_on_a_clean_gpu(tmp_path):
    smi = _fake_smi(tmp_path, apps=APPS)
    proc = _cli(tmp_path, "--num-processes", "2", path_prefix=f"{smi.parent}{os.pathsep}")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "pid 4242" in proc.stdout and "kill PID" in proc.stdout and "Traceback" not in proc.stderr
    proc = _cli(tmp_path, "--num-processes", "2", "--preflight", "warn", path_prefix=f"{smi.parent}{os.pathsep}")
    assert proc.returncode == 0 and "warning: " in proc.stdout
    (tmp_path / "apps.csv").write_text("")
    proc = _cli(tmp_path, "--num-processes", "1", path_prefix=f"{smi.parent}{os.pathsep}")
    assert proc.returncode == 0 and "output result=success" in proc.stdout


def test_launch_command_is_explicit(tmp_path):
    argv = ["--launch", "--model_name", "m", "--allow-cpu", "true"]
    cmd, env = launch.build_command("/x/train.py", argv, config_file="c.yaml", num_processes=2,
                                    mixed_precision="bf16", port=29511, cpu=True)
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--config_file", "c.yaml"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29511"
    assert cmd[cmd.index("/x/train.py") + 1:] == ["--model_name", "m", "--allow-cpu", "true"]
    assert env["ACCELERATE_USE_CPU"] == "1" and env["INPUT_LAUNCH"] == "false"  # --cpu would start one process
    cmd, env = launch.build_command("/x/train.py", [], config_file="c.yaml", num_processes=1, mixed_precision=None,
                                    port=None, cpu=True)
    assert "--cpu" in cmd and "ACCELERATE_USE_CPU" not in env and "--mixed_precision" not in cmd
    cfg = launch.generated_config(4, "bf16", 29500, cpu=False)
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 4 and cfg["mixed_precision"] == "bf16"


def _topology(**kw):
    from llmops.train.config import build_parser, validate

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    args = validate(build_parser().parse_args(["--model_name", "m", "--dataset", "d", "--output_dir", "o", *flags]))
    return launch.topology(args, {})


def test_a_gpu_machine_of_a_two_machine_run_gets_an_explicit_multi_node_launch():
    from types import SimpleNamespace

    unset = SimpleNamespace(num_machines=None, machine_rank=None, num_processes=None, main_process_ip=None,
                            main_process_port=None)
    topo = launch.topology(unset, {"num_machines": 2, "machine_rank": 1, "num_processes": 16,
                                   "main_process_ip": "10.0.0.11", "main_process_port": 29500})
    assert (topo.per_machine, topo.machines, topo.rank, topo.total) == (8, 2, 1, 16)  # accelerate counts all
    topo = _topology(num_processes=8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.11",
                     main_process_port=29500)
    assert topo.total == 16
    cfg = launch.generated_config(topo.total, "bf16", topo.port, cpu=False, topo=topo)
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 16 and cfg["use_cpu"] is False
    assert (cfg["num_machines"], cfg["machine_rank"], cfg["main_process_ip"]) == (2, 1, "10.0.0.11")
    cmd, env = launch.build_command("/x/train.py", [], config_file="c.yaml", num_processes=topo.total,
                                    mixed_precision="bf16", port=topo.port, cpu=False, topo=topo)
    joined = " ".join(cmd)
    assert "--num_processes 16 --num_machines 2 --machine_rank 1 --main_process_ip 10.0.0.11" in joined
    assert "--main_process_port 29500" in joined and env["LLMOPS_NUM_MACHINES"] == "2"
    assert "ACCELERATE_USE_CPU" not in env and "--cpu" not in cmd


@pytest.mark.parametrize("kw, message", [
    ({"num_machines": 2, "machine_rank": 1}, "main-process-ip/main-process-port are not both set"),
    ({"num_machines": 2, "main_process_ip": "10.0.0.1"}, "main-process-ip/main-process-port are not both set"),
    ({"num_machines": 2, "machine_rank": 2}, "machine-rank must be 0 to num-machines - 1"),
    ({"num_machines": 0}, "num-machines must be at least 1"),
    ({"distributed_timeout": 0}, "distributed-timeout must be at least 1"),
])
def test_multi_node_settings_that_cannot_meet_are_usage_errors(kw, message):
    from llmops.errors import UsageError

    with pytest.raises(UsageError, match=message):
        _topology(**kw)


@pytest.mark.parametrize("codes, launcher_rc, expected", [
    ({0: 2, 1: 2}, 1, 2),      # bad input reported by the training processes, not the launcher's generic 1
    ({0: 0, 1: 1}, 1, 1),
    ({0: 0}, 0, 0),
    ({}, 1, 3),                # killed without a word: most likely out of memory
])
def test_exit_code_comes_from_the_training_processes(tmp_path, codes, launcher_rc, expected):
    from llmops.errors import InfraError

    for rank, code in codes.items():
        (tmp_path / f"rank-{rank}").write_text(str(code))
    if expected == 3:  # nobody reported: the launcher's error says so (scripts/train.py's main reports it, exit 3)
        with pytest.raises(InfraError, match="out of memory") as err:
            launch.exit_code(tmp_path, launcher_rc)
        assert err.value.exit_code == 3
        return
    assert launch.exit_code(tmp_path, launcher_rc) == expected
