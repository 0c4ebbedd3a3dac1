"""Where models come from and how the trained one is written.

``check_source`` runs before torch is imported: a local folder must hold a config.json (and tokenizer files when
it is the tokenizer too); anything else is a hub id, which with ``HF_HUB_OFFLINE=1`` must already be in the hub
cache, else a clear error (exit 2) says what is missing and how to get it. ``load_tokenizer``/``load_model`` turn
loader exceptions into the same kind of error. ``apply_lora`` wraps the model with a peft LoRA adapter;
``make_optimizer`` is the AdamW every run uses; ``save_final`` writes safetensors weights (full, LoRA merged into
full, or the adapter alone) and the tokenizer.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from llmops.errors import InputError, UsageError
from llmops.inputs import split_list

DTYPES = ("auto", "float32", "bfloat16", "float16")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_source(name: str, what: str = "model", need: str = "config.json") -> str:
    """'local' or 'hub'; raises InputError when the model/tokenizer cannot possibly load."""
    if not name or not name.strip():
        raise UsageError(f"no {what} given", f"pass --{what.replace(' ', '-')} (a local folder or a hub id)")
    path = Path(name).expanduser()
    if path.is_dir():
        if need == "tokenizer":
            if not any((path / f).exists() for f in TOKENIZER_FILES):
                raise InputError(f"{what} folder {name} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])})",
                                 "save the tokenizer into that folder (tokenizer.save_pretrained) or pass --tokenizer")
        elif not (path / need).exists():
            extra = " (it holds a LoRA adapter: pass its base model and train a new adapter)" \
                if (path / "adapter_config.json").exists() else ""
            raise InputError(f"{what} folder {name} has no {need}{extra}",
                             "point to a folder written by save_pretrained (config.json + *.safetensors)")
        return "local"
    if path.exists():
        raise InputError(f"{what} {name} is a file, not a model folder", "give the folder that holds config.json")
    if name.startswith((".", "/", "~")) or "\\" in name or not _HUB_ID.fullmatch(name):
        raise InputError(f"{what} folder not found: {name}",
                         f"check the path (relative paths are from {os.getcwd()}); a hub id looks like org/name")
    if offline():
        from huggingface_hub import constants, try_to_load_from_cache

        probe = "tokenizer_config.json" if need == "tokenizer" else need
        if not isinstance(try_to_load_from_cache(name, probe), str):
            raise InputError(
                f"{what} {name!r} is not a local folder and HF_HUB_OFFLINE=1 forbids downloading it; its {probe} is "
                f"not in the hub cache ({constants.HF_HUB_CACHE}) either",
                f"download it on a machine with network (huggingface-cli download {name}) into that cache or a "
                "folder and pass the folder, or unset HF_HUB_OFFLINE")
    return "hub"


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the tokenizer from {name}: {_first_line(exc)}",
                         "check that the folder/hub id has a complete tokenizer (tokenizer.json or "
                         "tokenizer_config.json)") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding never carries labels; any id will do
    return tokenizer


def load_model(name: str, dtype: str = "float32", attn_implementation: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": "auto" if dtype == "auto" else getattr(torch, dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise InputError(f"cannot load the model from {name}: {_first_line(exc)}",
                         "check that it is a causal LM folder with config.json and weights (*.safetensors), and that "
                         "attn-implementation is supported by it") from None


def apply_lora(model, r: int, alpha: int, dropout: float, targets: str):
    from peft import LoraConfig, get_peft_model

    names = split_list(targets)
    target = "all-linear" if names in ([], ["all-linear"]) else names
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UsageError(f"LoRA target modules {targets!r}: {_first_line(exc)}",
                         "name modules the model has (e.g. q_proj,v_proj) or use all-linear") from None


def make_optimizer(model, lr: float, weight_decay: float):
    """AdamW over the trainable parameters, with torch's fused kernel (one pass per step over all parameters, on CPU
    and GPU; what transformers' Trainer, and so TRL, uses by default) unless this torch or dtype lacks it."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # the fused kernel does not take this device/dtype
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_final(accelerator, model, tokenizer, out: Path, *, lora: bool, merge: bool) -> str:
    """Every process calls this (sharded states are gathered); the main process writes. Returns the weights kind."""
    state_dict = accelerator.get_state_dict(model)
    kind = "full" if (not lora or merge) else "adapter"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        base = unwrapped.get_base_model() if lora else unwrapped
        base.config.use_cache = True
        if not lora:
            unwrapped.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
        elif merge:
            unwrapped.save_pretrained(out / "adapter", safe_serialization=True)
            unwrapped.merge_and_unload().save_pretrained(out, safe_serialization=True)
        else:
            unwrapped.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        for path in out.rglob("*"):  # weights are saved 0600: a server running as another user must read them
            if path.is_file():
                path.chmod(0o644)
    return kind
