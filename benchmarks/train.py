"""Packing vs padding: useful (non-padding) tokens per second and peak memory of scripts/train.py, same model, same
data, same number of steps, both measured in this run.

The data is synthetic chat with a skewed, long-tailed length distribution like real conversations (log-normal turn
lengths: most samples short, a few near the limit). With padding, each batch is padded to its longest sample, so
the compute spent on pad tokens grows with the spread of lengths; packing fills rows of max-seq-length with whole
samples (attention kept inside each sample), so almost every token computed is a real one.

    python benchmarks/train.py --quick            # tiny model, a few steps (smoke run, ~1 minute on 2 CPU cores)
    python benchmarks/train.py                    # bigger tiny model, more steps
    python benchmarks/train.py --model DIR --mixed-precision bf16 --max-seq-length 2048   # a real model on a GPU

Throughput excludes the first logged step (startup, allocator warm-up).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look "
         "more day could go come did number sound no most people my over know water than call first who may down "
         "side been now find any new work part take get place made live where after back little only round man year "
         "came show every good me give our under name very through just form sentence great think say help low line "
         "differ turn cause much mean before move right boy old too same tell does set three want air well also play "
         "small end put home read hand port large spell add even land here must big high such follow act why ask men "
         "change went light kind off need house picture try us again animal point mother world near build self earth "
         "father").split()


def synthetic_chat(n: int, max_tokens: int, seed: int = 0) -> list[dict]:
    """Conversations whose lengths are log-normal (median ~1/6 of the limit, long tail), like real chat data."""
    rng = random.Random(seed)

    def text(mean_words: float) -> str:
        k = max(2, min(int(rng.lognormvariate(math.log(mean_words), 0.9)), max_tokens // 3))
        return " ".join(rng.choice(WORDS) for _ in range(k))

    rows = []
    for _ in range(n):
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
            messages += [{"role": "user", "content": text(max_tokens / 24)},
                         {"role": "assistant", "content": text(max_tokens / 12)}]
        rows.append({"messages": messages})
    return rows


def run_train(work: Path, name: str, model: str, data: Path, args, packing: bool) -> dict:
    out = work / name
    cmd = [sys.executable, str(ROOT / "scripts/train.py"), "--model_name", model, "--dataset", str(data),
           "--format", "chat", "--output_dir", str(out), "--packing", str(packing).lower(), "--truncation", "true",
           "--max-seq-length", str(args.max_seq_length), "--batch-size", str(args.batch_size), "--max-steps",
           str(args.steps), "--logging-steps", "1", "--checkpoint-steps", "0", "--learning-rate", "1e-4",
           "--model-version", name]
    if args.mixed_precision:
        cmd += ["--mixed-precision", args.mixed_precision]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env = {k: v for k, v in env.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "llmops-model.json").read_text())
    records = [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    tokens = seconds = 0.0
    previous = steps[0]["tokens_seen"]
    for r in steps[1:]:
        window = r["tokens_seen"] - previous
        tokens, seconds, previous = tokens + window, seconds + window / r["tokens_per_second"], r["tokens_seen"]
    return {"useful_tokens_per_s": tokens / seconds, "tokens": int(tokens), "seconds": seconds,
            "peak_memory_mb": meta["metrics"]["peak_memory_mb"], "final_loss": meta["metrics"]["train_loss"],
            "device": meta["hardware"]["device"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few steps")
    p.add_argument("--model", help="a model folder (default: a tiny random Llama built here)")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-seq-length", type=int, default=1024)
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    args.steps = args.steps or (6 if args.quick else 25)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        rows = synthetic_chat(400 if args.quick else args.samples, args.max_seq_length)
        data = work / "chat.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        model = args.model
        if not model:
            from llmops.tiny_model import build_tiny_model

            hidden, layers = (64, 2) if args.quick else (256, 4)
            model = str(build_tiny_model(work / "model", [" ".join(WORDS)], hidden=hidden, layers=layers, heads=4,
                                         max_positions=args.max_seq_length))
        print(f"model {model}, {len(rows)} chats, {args.steps} steps, batch {args.batch_size}, "
              f"max-seq-length {args.max_seq_length}", flush=True)
        padded = run_train(work, "padded", model, data, args, packing=False)
        packed = run_train(work, "packed", model, data, args, packing=True)
    ratio = packed["useful_tokens_per_s"] / padded["useful_tokens_per_s"]
    print(f"\n{'mode':<8} {'useful tok/s':>13} {'tokens':>9} {'seconds':>8} {'peak MB':>9} {'loss':>7}")
    for name, r in (("padded", padded), ("packed", packed)):
        print(f"{name:<8} {r['useful_tokens_per_s']:>13.0f} {r['tokens']:>9} {r['seconds']:>8.2f} "
              f"{r['peak_memory_mb']:>9.0f} {r['final_loss']:>7.3f}")
    print(f"\npacking / padding useful tokens per second: {ratio:.2f}x on {packed['device']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"padded": padded, "packed": packed, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
