"""A tiny causal LM and BPE tokenizer built offline from text, for the bundled example, tests and benchmarks.

No model hub is needed: the tokenizer is trained with ``tokenizers`` on the given texts and the model is a small
Llama-architecture network with random weights (``transformers`` config), saved as a normal model folder that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load. It has a chat template.

    python -m llmops.demo.tiny_model OUT_DIR [--data FILE.jsonl ...] [--hidden 64] [--layers 2]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterable

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
BASE_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "zero one two three four five six seven eight nine ten plus minus what is the answer",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}<>-_=+/*&%$#@",
]


def texts_from_jsonl(paths: Iterable[str | Path]) -> list[str]:
    out: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                for key in ("prompt", "completion", "text", "reference"):
                    if isinstance(row.get(key), str):
                        out.append(row[key])
                for msg in row.get("messages") or []:
                    if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                        out.append(msg["content"])
    return out


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(BASE_TEXT + texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=SPECIAL[4:],
                                   padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, texts: list[str] | None = None, *, hidden: int = 64, layers: int = 2,
                     heads: int = 4, vocab_size: int = 512, max_positions: int = 512, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(list(texts or []), vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    return save_model_folder(LlamaForCausalLM(config), tokenizer, out)


def save_model_folder(model, tokenizer, out: Path) -> Path:
    """``model`` and ``tokenizer`` saved into ``out`` (generation pads with the tokenizer's pad token), every file
    readable by others: weights are saved 0600, and a server running as another user must read them."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build a tiny offline causal LM + tokenizer folder.")
    parser.add_argument("out_dir")
    parser.add_argument("--data", nargs="*", default=[], help="JSONL files whose text trains the tokenizer")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    path = build_tiny_model(args.out_dir, texts_from_jsonl(args.data), hidden=args.hidden, layers=args.layers,
                            vocab_size=args.vocab_size)
    print(f"tiny model written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
