"""``--launch``: the preflight, then this same script under ``accelerate launch`` with explicit arguments.

Nothing on the runner decides the run silently: the launch always passes ``--config_file`` (the accelerate-config
input, or a generated single-machine config), ``--num_processes`` (input, config, or one per visible GPU),
``--mixed_precision`` when given, and ``--main_process_port`` (input, config, or a free port). Multi-GPU,
multi-node, DeepSpeed and FSDP are accelerate's own, chosen by that config. CPU runs (``allow-cpu``) with several
processes use accelerate's DDP launcher over gloo (``ACCELERATE_USE_CPU=1``), since ``--cpu`` would start one.

Each training process writes its exit code to a status folder, so the action reports the real reason (bad input:
2) rather than the launcher's generic 1, and a process killed without a word (out of memory) is named as such.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from llmops import gha
from llmops.errors import EXIT_INFRA, InfraError, UsageError
from llmops.train import preflight

STATUS_ENV = "LLMOPS_TRAIN_STATUS_DIR"
_LAUNCH_ONLY = {"--launch", "--preflight-only"}


def read_accelerate_config(path: str | None) -> dict:
    if not path:
        return {}
    try:
        cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"accelerate-config {path}: cannot read it: {exc}",
                         "write it with `accelerate config --config_file FILE` and commit it") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"accelerate-config {path}: expected a YAML mapping", "see `accelerate config --help`")
    return cfg


def generated_config(num_processes: int, mixed_precision: str | None, port: int, cpu: bool) -> dict:
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU" if num_processes > 1 else "NO",
            "num_processes": num_processes, "num_machines": 1, "machine_rank": 0, "gpu_ids": "all",
            "mixed_precision": mixed_precision or "no", "main_process_port": port, "rdzv_backend": "static",
            "same_network": True, "use_cpu": cpu and num_processes == 1, "downcast_bf16": "no"}


def child_argv(argv: list[str]) -> list[str]:
    return [a for a in argv if a.split("=", 1)[0] not in _LAUNCH_ONLY]


def build_command(script: str, argv: list[str], *, config_file: str, num_processes: int | None,
                  mixed_precision: str | None, port: int | None, cpu: bool) -> tuple[list[str], dict]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    if mixed_precision:
        cmd += ["--mixed_precision", mixed_precision]
    if port:
        cmd += ["--main_process_port", str(port)]
    env = {"INPUT_LAUNCH": "false", "INPUT_PREFLIGHT_ONLY": "false"}
    if cpu:
        if (num_processes or 1) > 1:
            env["ACCELERATE_USE_CPU"] = "1"
        else:
            cmd.append("--cpu")
    cmd += ["--quiet", script] + child_argv(argv)
    return cmd, env


def report_preflight(result: preflight.Preflight, mode: str) -> None:
    for f in result.findings:
        text = f.message + (f" — fix: {f.hint}" if f.hint else "")
        level = f.level if (f.level != "error" or mode == "error") else "warning"
        gha.annotate(level, text, title="preflight")
    if result.gpus and os.environ.get("GITHUB_STEP_SUMMARY"):
        gha.Summary().heading("GPU preflight", 3).table(
            ["GPU", "name", "free MiB", "total MiB"],
            [[g.index, g.name, g.free_mib, g.total_mib] for g in result.gpus]).write()
    errors = result.errors
    if errors and mode == "error":
        raise InfraError(f"preflight failed: {'; '.join(e.message for e in errors)}",
                         " / ".join(e.hint for e in errors if e.hint) + " (or set preflight: warn to go on anyway)")


def exit_code(status_dir: Path, launcher_rc: int) -> int:
    codes = {}
    for path in status_dir.glob("rank-*"):
        try:
            codes[int(path.name[5:])] = int(path.read_text().strip())
        except ValueError:
            continue
    if codes.get(0):
        return codes[0]
    failed = [c for _, c in sorted(codes.items()) if c]
    if failed:
        return failed[0]
    if launcher_rc == 0:
        return 0
    gha.error(f"a training process ended without reporting (launcher exit {launcher_rc}): it was most likely killed "
              "by the OS (out of memory) or lost its peers (NCCL/network); see the log above")
    gha.set_output("result", "error")
    return EXIT_INFRA


def preflight_and_launch(args, script: str, argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    user_cfg = read_accelerate_config(args.accelerate_config)
    machines = int(user_cfg.get("num_machines") or 1)
    total = args.num_processes or user_cfg.get("num_processes")
    port = args.main_process_port
    result = preflight.run_preflight(expected_gpus=math.ceil(int(total) / machines) if total else None,
                                     min_free_gib=args.min_free_gpu_memory, port=port, allow_cpu=args.allow_cpu,
                                     check_gpu=args.preflight != "off")
    report_preflight(result, args.preflight)
    if args.preflight_only:
        gha.set_output("result", "success")
        return 0
    cpu = args.allow_cpu and shutil.which("nvidia-smi") is None
    if port is None and machines == 1 and not user_cfg.get("main_process_port"):
        port = preflight.free_port()
    n = int(total) if total else (len(result.gpus) or 1)
    with tempfile.TemporaryDirectory(prefix="llmops-train-") as tmp:
        config_file = args.accelerate_config
        if not config_file:
            config_file = str(Path(tmp) / "accelerate.yaml")
            Path(config_file).write_text(yaml.safe_dump(generated_config(n, args.mixed_precision, port, cpu)))
        status = Path(tmp) / "status"
        status.mkdir()
        cmd, env = build_command(str(Path(script).resolve()), argv, config_file=config_file,
                                 num_processes=n, mixed_precision=args.mixed_precision, port=port, cpu=cpu)
        print("launching: " + shlex.join(cmd), flush=True)
        proc = subprocess.run(cmd, env={**os.environ, **env, STATUS_ENV: str(status)})
        return exit_code(status, proc.returncode)


def write_status(code: int) -> None:
    """Called by scripts/train.py in each training process."""
    folder = os.environ.get(STATUS_ENV)
    if folder and Path(folder).is_dir():
        rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
        (Path(folder) / f"rank-{rank}").write_text(str(code))
