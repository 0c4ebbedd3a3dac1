"""``--launch``: the preflight, then this same script under ``accelerate launch`` with explicit arguments.

Nothing on the runner decides the run silently: the launch always passes ``--config_file`` (the accelerate-config
input, or a generated config), ``--num_processes`` (all machines' processes: num-processes per machine from the
input, the config, or one per visible GPU), ``--mixed_precision`` when given, and ``--main_process_port`` (input,
config, or a free port on one machine). With several machines each machine's job runs this same launch with its
own ``--machine_rank`` and the same ``--num_machines``, ``--main_process_ip`` and port (static rendezvous: every
rank waits for the others). Multi-GPU, DeepSpeed and FSDP are accelerate's own, chosen by the config. CPU runs
(``allow-cpu``) with several processes use accelerate's DDP launcher over gloo (``ACCELERATE_USE_CPU=1``), since
``--cpu`` would start one.

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
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmops.errors import InfraError, UsageError
from llmops.train import preflight, report

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


@dataclass
class Topology:
    """Where this launch sits in the run: processes per machine, machines, this machine's rank, the rendezvous."""
    per_machine: int | None
    machines: int = 1
    rank: int = 0
    ip: str | None = None
    port: int | None = None

    @property
    def total(self) -> int | None:
        return self.per_machine * self.machines if self.per_machine else None


def topology(args, user_cfg: dict) -> Topology:
    """Inputs first, then the accelerate config; several machines need the rendezvous host and port agreed."""
    machines = args.num_machines or int(user_cfg.get("num_machines") or 1)
    rank = args.machine_rank if args.machine_rank is not None else int(user_cfg.get("machine_rank") or 0)
    if not 0 <= rank < machines:
        raise UsageError(f"machine-rank {rank} is not below num-machines {machines}",
                         "number the machines 0 .. num-machines - 1, 0 being the main machine")
    per_machine = args.num_processes
    if per_machine is None and user_cfg.get("num_processes"):
        per_machine = math.ceil(int(user_cfg["num_processes"]) / machines)  # accelerate counts all machines
    ip = args.main_process_ip or user_cfg.get("main_process_ip")
    port = args.main_process_port or user_cfg.get("main_process_port")
    if machines > 1 and not (ip and port):
        raise UsageError(f"num-machines is {machines} but main-process-ip/main-process-port are not both set",
                         "give every machine's job the same main-process-ip (the address of machine rank 0, "
                         "reachable from the others) and main-process-port")
    return Topology(per_machine, machines, rank, ip, int(port) if port else None)


def generated_config(num_processes: int, mixed_precision: str | None, port: int, cpu: bool,
                     topo: Topology | None = None) -> dict:
    """accelerate's config for ``num_processes`` processes in all (``topo``: several machines)."""
    topo = topo or Topology(num_processes)
    cfg = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU" if num_processes > 1 else "NO",
           "num_processes": num_processes, "num_machines": topo.machines, "machine_rank": topo.rank,
           "gpu_ids": "all", "mixed_precision": mixed_precision or "no", "main_process_port": port,
           "rdzv_backend": "static", "same_network": True, "use_cpu": cpu and num_processes == 1,
           "downcast_bf16": "no"}
    if topo.machines > 1:
        cfg["main_process_ip"] = topo.ip
    return cfg


def child_argv(argv: list[str]) -> list[str]:
    return [a for a in argv if a.split("=", 1)[0] not in _LAUNCH_ONLY]


def build_command(script: str, argv: list[str], *, config_file: str, num_processes: int | None,
                  mixed_precision: str | None, port: int | None, cpu: bool,
                  topo: Topology | None = None) -> tuple[list[str], dict]:
    """``num_processes`` counts every machine's processes, as accelerate does."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    env = {"INPUT_LAUNCH": "false", "INPUT_PREFLIGHT_ONLY": "false"}
    if topo and topo.machines > 1:
        cmd += ["--num_machines", str(topo.machines), "--machine_rank", str(topo.rank), "--main_process_ip",
                str(topo.ip)]
        env["LLMOPS_NUM_MACHINES"] = str(topo.machines)
    if mixed_precision:
        cmd += ["--mixed_precision", mixed_precision]
    if port:
        cmd += ["--main_process_port", str(port)]
    if cpu:
        if (num_processes or 1) > 1:
            env["ACCELERATE_USE_CPU"] = "1"
        else:
            cmd.append("--cpu")
    cmd += ["--quiet", script] + child_argv(argv)
    return cmd, env


def report_preflight(result: preflight.Preflight, mode: str) -> None:
    report.preflight(result, mode)
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
    raise InfraError(f"a training process ended without reporting (launcher exit {launcher_rc}): it was most likely "
                     "killed by the OS (out of memory) or lost its peers (NCCL/network); see the log above")


def preflight_and_launch(args, script: str, argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    user_cfg = read_accelerate_config(args.accelerate_config)
    topo = topology(args, user_cfg)
    main_machine = topo.rank == 0
    result = preflight.run_preflight(expected_gpus=topo.per_machine, min_free_gib=args.min_free_gpu_memory,
                                     port=topo.port if main_machine else None, allow_cpu=args.allow_cpu,
                                     check_gpu=args.preflight != "off")
    report_preflight(result, args.preflight)
    if args.preflight_only:
        return 0
    cpu = args.allow_cpu and shutil.which("nvidia-smi") is None
    if topo.port is None:
        topo.port = preflight.free_port()
    topo.per_machine = topo.per_machine or len(result.gpus) or 1
    n = topo.total
    with tempfile.TemporaryDirectory(prefix="llmops-train-") as tmp:
        config_file = args.accelerate_config
        if not config_file:
            config_file = str(Path(tmp) / "accelerate.yaml")
            Path(config_file).write_text(yaml.safe_dump(generated_config(n, args.mixed_precision, topo.port, cpu,
                                                                         topo)))
        status = Path(tmp) / "status"
        status.mkdir()
        cmd, env = build_command(str(Path(script).resolve()), argv, config_file=config_file, num_processes=n,
                                 mixed_precision=args.mixed_precision, port=topo.port, cpu=cpu, topo=topo)
        print("launching: " + shlex.join(cmd), flush=True)
        proc = subprocess.run(cmd, env={**os.environ, **env, STATUS_ENV: str(status)})
        return exit_code(status, proc.returncode)


def write_status(code: int) -> None:
    """Called by scripts/train.py in each training process."""
    folder = os.environ.get(STATUS_ENV)
    if folder and Path(folder).is_dir():
        rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
        (Path(folder) / f"rank-{rank}").write_text(str(code))
