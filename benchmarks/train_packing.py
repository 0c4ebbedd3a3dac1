"""Packing vs padding: useful (non-padding) tokens per second and peak memory of scripts/train.py, same model, same
data, same number of steps, both measured in this run.

The data is synthetic chat with a skewed, long-tailed length distribution like real conversations (log-normal turn
lengths: most samples short, a few near the limit). With padding, each batch is padded to its longest sample, so
the compute spent on pad tokens grows with the spread of lengths; packing fills rows of max-seq-length with whole
samples (attention kept inside each sample), so almost every token computed is a real one.

    python benchmarks/train_packing.py --quick            # small model, a few steps (smoke run, ~1 minute on 2 CPU cores)
    python benchmarks/train_packing.py                    # wider model, more steps, two alternating rounds
    python benchmarks/train_packing.py --model DIR --mixed-precision bf16 --max-seq-length 2048   # a real model on a GPU

Model shape: per token, attention costs ~4*L*h FLOPs against ~20*h^2 for the projections and MLP, so what packing
gains depends on L/(5h). A 7B model (h=4096) at 2048 tokens has L/(5h) = 0.1; the built-in models keep that
proportion (h=512 at L=256, quick: h=256 at L=128) so CPU numbers say what a GPU run of a real model would, at
CPU-affordable sizes. With sdpa, a packed row's attention is computed densely (L^2, masked per sample); flash-
attention's varlen kernels compute only each sample's block. Tiny-width models at long L are attention-bound and
gain little from packing on sdpa.

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
    """Conversations whose total length is log-normal (median ~1/16 of the limit in words, sigma 1: most short, a
    long tail up to the limit), split over 1-3 user/assistant turns with longer answers, like SFT chat data."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(2, k)))

    rows = []
    for _ in range(n):
        total = min(int(rng.lognormvariate(math.log(max_tokens / 16), 1.0)), max_tokens // 2)
        turns = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for _ in range(turns):
            messages += [{"role": "user", "content": words(total // (3 * turns))},
                         {"role": "assistant", "content": words(2 * total // (3 * turns))}]
        rows.append({"messages": messages})
    return rows


def length_stats(model: str, rows: list[dict], max_len: int, batch: int) -> dict:
    """Token lengths of the data and the share of real tokens in padded batches of ``batch`` random samples."""
    from transformers import AutoTokenizer

    from llmops.train.data import encode_chat

    tok = AutoTokenizer.from_pretrained(model)
    lens = sorted(min(len(encode_chat(tok, r["messages"])[0]), max_len) for r in rows)
    rng = random.Random(1)
    fill = [sum(s) / (batch * max(s)) for s in (rng.sample(lens, batch) for _ in range(2000))]
    return {"mean": sum(lens) / len(lens), "p50": lens[len(lens) // 2], "p90": lens[int(len(lens) * 0.9)],
            "max": lens[-1], "padded_fill": sum(fill) / len(fill)}


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
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-length", type=int, help="default 256 (quick: 128), or 1024 with --model")
    p.add_argument("--hidden", type=int, help="built-in model width (default 512, quick: 256)")
    p.add_argument("--layers", type=int, help="built-in model depth (default 4, quick: 2)")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"))
    p.add_argument("--rounds", type=int, help="runs per mode, alternating; the best counts (default 1 quick, 2)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    args.steps = args.steps or (6 if args.quick else 15)
    args.max_seq_length = args.max_seq_length or (1024 if args.model else 128 if args.quick else 256)
    args.hidden = args.hidden or (256 if args.quick else 512)
    args.layers = args.layers or (2 if args.quick else 4)
    args.rounds = args.rounds or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        rows = synthetic_chat(400 if args.quick else args.samples, args.max_seq_length)
        data = work / "chat.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        model = args.model
        if not model:
            from llmops.demo.tiny_model import build_tiny_model

            model = str(build_tiny_model(work / "model", [" ".join(WORDS)], hidden=args.hidden, layers=args.layers,
                                         heads=max(4, args.hidden // 64), max_positions=args.max_seq_length))
        stats = length_stats(model, rows, args.max_seq_length, args.batch_size)
        print(f"model {args.model or f'built-in Llama h={args.hidden} x{args.layers}'}, {len(rows)} chats, {args.steps} steps, batch {args.batch_size}, max-seq-length "
              f"{args.max_seq_length}\nsample tokens: mean {stats['mean']:.0f}, median {stats['p50']}, p90 "
              f"{stats['p90']}, max {stats['max']}; real tokens in a padded batch: {stats['padded_fill']:.0%}",
              flush=True)
        runs: dict[str, list[dict]] = {"padded": [], "packed": []}
        for i in range(args.rounds):  # alternate, keep each mode's best round: robust to a busy machine
            for name in runs:
                runs[name].append(run_train(work, f"{name}-{i}", model, data, args, packing=name == "packed"))
        padded, packed = (max(runs[n], key=lambda r: r["useful_tokens_per_s"]) for n in ("padded", "packed"))
    ratio = packed["useful_tokens_per_s"] / padded["useful_tokens_per_s"]
    print(f"\n{'mode':<8} {'useful tok/s':>13} {'tokens':>9} {'seconds':>8} {'peak MB':>9} {'loss':>7}")
    for name, r in (("padded", padded), ("packed", packed)):
        print(f"{name:<8} {r['useful_tokens_per_s']:>13.0f} {r['tokens']:>9} {r['seconds']:>8.2f} "
              f"{r['peak_memory_mb']:>9.0f} {r['final_loss']:>7.3f}")
    print(f"\npacking / padding useful tokens per second: {ratio:.2f}x on {packed['device']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"padded": padded, "packed": packed, "ratio": ratio, "data": stats},
                                             indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
