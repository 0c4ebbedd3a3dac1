"""Checks a self-hosted GPU runner before a training run starts, each failure with the fix:

- ``nvidia-smi`` is there and answers (the NVIDIA driver is installed),
- enough GPUs are visible (``CUDA_VISIBLE_DEVICES`` respected) for the processes asked for,
- each GPU has at least ``min_free_gib`` free memory,
- no other process holds memory on those GPUs (a cancelled job's leftover training is the usual cause),
- ``--main_process_port`` is free on this machine,
- no ``$HF_HOME/accelerate/default_config.yaml`` or ``ACCELERATE_*`` variable silently changes the run (reported;
  the launch always passes an explicit config file, so the default file is ignored).

``nvidia-smi`` is a command given to ``run_preflight`` and its CSV output is parsed by plain functions, so all of
this is tested with fixture strings on machines without a GPU. With ``allow_cpu`` the GPU checks are skipped.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GPU_QUERY = ["--query-gpu=index,name,uuid,memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"]
APP_QUERY = ["--query-compute-apps=gpu_uuid,pid,process_name,used_memory", "--format=csv,noheader,nounits"]
# Variables we set ourselves or that only say where things are.
_OWN_ENV = {"ACCELERATE_USE_CPU", "ACCELERATE_LOG_LEVEL"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    total_mib: int
    used_mib: int
    free_mib: int


@dataclass(frozen=True)
class GpuProcess:
    gpu_uuid: str
    pid: int
    name: str
    used_mib: int | None


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | notice
    message: str
    hint: str = ""


@dataclass
class Preflight:
    gpus: list[Gpu] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    port: int | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]


def _mib(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_gpus(text: str) -> list[Gpu]:
    gpus = []
    for cells in _rows(text):
        if len(cells) < 6:
            raise ValueError(f"unexpected nvidia-smi line: {','.join(cells)!r}")
        index, name, uuid, total, used, free = cells[0], ",".join(cells[1:-4]), *cells[-4:]
        gpus.append(Gpu(int(index), name, uuid, _mib(total) or 0, _mib(used) or 0, _mib(free) or 0))
    return gpus


def parse_processes(text: str) -> list[GpuProcess]:
    out = []
    for cells in _rows(text):
        if len(cells) < 4 or not cells[1].isdigit():
            continue  # "No running processes found" and other prose
        out.append(GpuProcess(cells[0], int(cells[1]), ",".join(cells[2:-1]), _mib(cells[-1])))
    return out


def visible(gpus: list[Gpu], cuda_visible: str | None) -> list[Gpu]:
    """The GPUs a process will see: CUDA_VISIBLE_DEVICES lists indices or UUIDs (unset: all)."""
    if cuda_visible is None:
        return gpus
    wanted = [w.strip() for w in cuda_visible.split(",") if w.strip()]
    out = []
    for w in wanted:
        match = [g for g in gpus if str(g.index) == w or g.uuid == w or (w.startswith("GPU-") and g.uuid.startswith(w))]
        out += [g for g in match if g not in out]
    return out


def check_gpus(gpus: list[Gpu], processes: list[GpuProcess], *, expected: int | None, min_free_gib: float,
               ) -> list[Finding]:
    found: list[Finding] = []
    if not gpus:
        return [Finding("error", "nvidia-smi lists no usable GPU (or CUDA_VISIBLE_DEVICES hides them all)",
                        "check the driver with nvidia-smi on the runner and CUDA_VISIBLE_DEVICES in its environment")]
    if expected and len(gpus) < expected:
        found.append(Finding("error", f"{expected} training processes need {expected} GPUs, but only {len(gpus)} "
                             f"are visible ({', '.join(f'{g.index}: {g.name}' for g in gpus)})",
                             "lower num-processes, or run on a runner label with more GPUs"))
    floor = int(min_free_gib * 1024)
    for g in gpus:
        if g.free_mib < floor:
            found.append(Finding("error", f"GPU {g.index} ({g.name}) has {g.free_mib} MiB free of {g.total_mib} MiB, "
                                 f"less than min-free-gpu-memory {min_free_gib:g} GiB",
                                 "free the GPU (see the processes listed) or lower min-free-gpu-memory"))
    ours = {g.uuid: g for g in gpus}
    stray = [p for p in processes if p.gpu_uuid in ours]
    if stray:
        listed = "; ".join(f"pid {p.pid} {p.name} on GPU {ours[p.gpu_uuid].index}"
                           + (f" holding {p.used_mib} MiB" if p.used_mib is not None else "") for p in stray)
        found.append(Finding("error", f"other processes hold GPU memory: {listed}",
                             "a cancelled or crashed job often leaves its training running: stop it (kill PID) or "
                             "wait for it; on shared machines pin this runner's GPUs with CUDA_VISIBLE_DEVICES"))
    return found


def check_port(port: int, host: str = "") -> Finding | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return Finding("error", f"main-process-port {port} is not free: {exc.strerror or exc}",
                           "a previous run may still be alive; choose another main-process-port or leave it empty "
                           "to pick a free one")
    return None


def free_port(host: str = "") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def default_accelerate_config(env: dict) -> Path:
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface")
    return Path(home) / "accelerate" / "default_config.yaml"


def check_environment(env: dict) -> list[Finding]:
    found = []
    stale = default_accelerate_config(env)
    if stale.is_file():
        found.append(Finding("notice", f"{stale} exists (from `accelerate config` on this runner); it is ignored "
                             "because this run passes an explicit accelerate config",
                             "delete it, or commit it and pass it as accelerate-config if it is what you want"))
    extra = sorted(k for k in env if k.startswith("ACCELERATE_") and k not in _OWN_ENV)
    if extra:
        found.append(Finding("warning", "the runner environment sets " + ", ".join(f"{k}={env[k]}" for k in extra)
                             + "; accelerate reads these and they can change the run",
                             "unset them in the runner's environment, or set the matching action inputs"))
    return found


def run_preflight(*, smi: str | list[str] = "nvidia-smi", expected_gpus: int | None = None,
                  min_free_gib: float = 2.0, port: int | None = None, allow_cpu: bool = False,
                  check_gpu: bool = True, env: dict | None = None, timeout: float = 60) -> Preflight:
    env = dict(os.environ if env is None else env)
    result = Preflight()
    result.findings += check_environment(env)
    if port is not None:
        problem = check_port(port)
        if problem:
            result.findings.append(problem)
    result.port = port
    if allow_cpu:
        result.findings.append(Finding("notice", "allow-cpu is true: GPU checks skipped"))
        check_gpu = False
    if not check_gpu:
        return result
    cmd = [smi] if isinstance(smi, str) else list(smi)
    if not shutil.which(cmd[0]):
        result.findings.append(Finding("error", f"{cmd[0]} not found: this runner has no NVIDIA driver (or it is not on"
                                       " PATH)", "run the job on your [self-hosted, gpu] runner, install the NVIDIA "
                                       "driver there, or set allow-cpu: true for a CPU run"))
        return result
    try:
        gpus_text = subprocess.run(cmd + GPU_QUERY, capture_output=True, text=True, timeout=timeout, check=True).stdout
        apps_text = subprocess.run(cmd + APP_QUERY, capture_output=True, text=True, timeout=timeout, check=True).stdout
        gpus = parse_gpus(gpus_text)
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or exc.stdout or "").strip().splitlines()[:1]
        result.findings.append(Finding("error", f"nvidia-smi failed (exit {exc.returncode}): {' '.join(reason)}",
                                       "the driver is not working on this runner: check `nvidia-smi` there (a "
                                       "driver/library version mismatch needs a reboot)"))
        return result
    except subprocess.TimeoutExpired:
        result.findings.append(Finding("error", f"nvidia-smi did not answer within {timeout:.0f}s",
                                       "the GPU or driver is hung: check the runner (dmesg, nvidia-smi)"))
        return result
    except ValueError as exc:
        result.findings.append(Finding("error", f"cannot read nvidia-smi output: {exc}", "update the NVIDIA driver"))
        return result
    result.gpus = visible(gpus, env.get("CUDA_VISIBLE_DEVICES"))
    result.findings += check_gpus(result.gpus, parse_processes(apps_text), expected=expected_gpus,
                                  min_free_gib=min_free_gib)
    return result
