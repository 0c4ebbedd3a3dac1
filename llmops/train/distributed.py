"""What changes when training runs in several processes: the accelerator, which rows each process trains on, and
what a lost peer looks like.

**Batches.** Every process walks the same global order of rows (``EpochSampler``: seed and epoch only). Optimizer
step ``k`` of an epoch trains on rows ``k*S .. (k+1)*S - 1`` of that order, where ``S = batch-size x processes x
gradient-accumulation-steps`` (the global batch); micro-batch ``j`` of the step takes the next
``batch-size x processes`` rows and process ``r`` takes its ``batch-size`` slice of them. So:

- the rows of a step, and so the loss curve, depend only on the global batch ``S``, not on how it is split:
  1 process x batch 4 and 2 processes x batch 2 train on the same rows in the same steps, and a checkpoint written
  by one world size resumes at another with the same ``S``;
- every row is trained on exactly once per epoch: the last, short step gives a process that has no rows left an
  empty micro-batch (all labels ignored, zero tokens) instead of repeating rows the way accelerate's
  ``even_batches`` does. Every process still runs the same forwards/backwards, as DDP and FSDP need.

**Accelerator.** The process-group timeout (``--distributed-timeout``) bounds how long a process waits for a
peer that stopped answering. accelerate treats CPU processes as ``MULTI_CPU`` and ignores an FSDP config there;
torch's FSDP2 (``fully_shard``) does run over gloo, so when the launch asked for FSDP version 2 on CPU we turn on
accelerate's FSDP2 path ourselves (``_fsdp_on_cpu``). FSDP version 1 and DeepSpeed need GPUs.
"""
from __future__ import annotations

import os
import platform
from datetime import timedelta

from llmops.errors import InfraError, UsageError

DEFAULT_TIMEOUT = 1800  # seconds; torch's own default process-group timeout


class GlobalBatches:
    """The rows process ``rank`` of ``world`` trains on, step by step (see the module docstring)."""

    def __init__(self, sampler, batch_size: int, world: int, rank: int, accumulation: int):
        self.sampler, self.batch_size, self.world, self.rank = sampler, batch_size, world, rank
        self.micro = batch_size * world
        self.per_step = self.micro * accumulation

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.sampler) // self.per_step)

    def steps(self, epoch: int, start: int = 0):
        """Yield, for each step of ``epoch`` from ``start``, the list of this process's micro-batches (row indices;
        an empty list is an empty micro-batch). Every process gets the same number of micro-batches per step."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        lo = self.rank * self.batch_size
        for k in range(start, self.steps_per_epoch):
            chunk = order[k * self.per_step:(k + 1) * self.per_step]
            yield [chunk[j:j + self.micro][lo:lo + self.batch_size] for j in range(0, len(chunk), self.micro)]


def check_cpu_mode(env: dict) -> None:
    """The launch asked for a mode that cannot run on CPU: say so instead of accelerate's silent DDP fallback."""
    if not _flag(env, "ACCELERATE_USE_CPU"):
        return
    if _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        raise UsageError("DeepSpeed does not run on CPU (accelerate would silently train with plain DDP instead)",
                         "on CPU use the generated config or FSDP with fsdp_version: 2; DeepSpeed needs GPUs")
    if _flag(env, "ACCELERATE_USE_FSDP") and env.get("FSDP_VERSION", "1") != "2":
        raise UsageError("FSDP version 1 does not run on CPU", "set fsdp_version: 2 in the accelerate config's "
                         "fsdp_config (torch's fully_shard runs over gloo), or train on GPUs")


def _flag(env: dict, name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def _fsdp_on_cpu(accelerator) -> None:
    import torch
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* settings accelerate launch exported
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    if not hasattr(torch.distributed.fsdp, "fully_shard"):
        raise UsageError(f"torch {torch.__version__} has no FSDP2 (fully_shard)", "use torch >= 2.6")
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState().distributed_type = DistributedType.FSDP  # accelerate copies it back from here on each state


def make_accelerator(args):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    check_cpu_mode(dict(os.environ))
    try:
        acc = Accelerator(mixed_precision=args.mixed_precision,
                          gradient_accumulation_steps=args.gradient_accumulation_steps,
                          kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=args.distributed_timeout))])
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"accelerate could not start with mixed-precision {args.mixed_precision}: {exc}",
                         "use bf16 on Ampere or newer GPUs, fp16 on older GPUs, no on CPU") from None
    if _flag(os.environ, "ACCELERATE_USE_FSDP") and acc.distributed_type == DistributedType.MULTI_CPU:
        _fsdp_on_cpu(acc)
    if acc.distributed_type == DistributedType.DEEPSPEED:  # no dataloader goes through prepare() to infer it from
        acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = args.batch_size
    return acc


def peer_lost(exc: BaseException, timeout: int) -> InfraError | None:
    """The error to report when ``exc`` means another training process died or stopped answering, else None."""
    import torch.distributed as dist

    text = str(exc)
    known = isinstance(exc, getattr(dist, "DistError", ())) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out",
                            "NCCL", "Gloo", "gloo", "Broken pipe", "recvValue failed", "Socket Timeout"))
    if not known:
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InfraError(f"lost contact with another training process ({first[:300]})",
                      f"another rank died or hung (out of memory? a runner stopped?) or the network between machines "
                      f"dropped; its log says which. Every rank stops within distributed-timeout ({timeout} s); "
                      "re-run with resume-from-checkpoint: latest to continue from the last checkpoint")


def peak_memory_mb(accelerator) -> float:
    import torch

    if torch.cuda.is_available():
        local = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        local = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float(accelerator.reduce(torch.tensor(local, device=accelerator.device), "max").item())


def hardware(accelerator) -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"device": accelerator.device.type, "num_processes": accelerator.num_processes,
            "num_machines": int(os.environ.get("GROUP_WORLD_SIZE") or os.environ.get("LLMOPS_NUM_MACHINES") or 1),
            "distributed_type": str(accelerator.distributed_type).split(".")[-1], "gpus": gpus,
            "cpu_count": os.cpu_count(), "hostname": platform.node()}
