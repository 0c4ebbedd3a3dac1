"""Fine-tune a causal LM with accelerate: full or LoRA, packed, resumable, versioned (train-on-self-hosted-gpu).

    accelerate launch scripts/train.py --model-name base --dataset data/train.jsonl --output-dir models/SHA
    python scripts/train.py ...                 one process, no launcher
    python scripts/train.py --launch ...        GPU preflight, then `accelerate launch` with explicit arguments
    python scripts/train.py --preflight-only    only the runner checks

Flags are kebab-case; the seed's --model_name / --output_dir (and any --snake_case spelling) still work. Every flag
also reads its action input from INPUT_<NAME>; see `--help` and docs/actions/train-on-self-hosted-gpu.md.
"""
from __future__ import annotations

import os
import sys

from llmops import gha
from llmops.cli import parse_args, run_script
from llmops.errors import LLMOpsError
from llmops.train import config, launch


def main(argv=None) -> int:
    parser = config.build_parser()
    args = config.validate(parse_args(parser, argv))
    if args.launch or args.preflight_only:
        code = launch.preflight_and_launch(args, __file__, argv)
        if args.preflight_only:
            gha.set_output("result", "success")
        return code
    from llmops.train.run import run_training

    if os.environ.get("RANK", "0") not in ("", "0"):
        try:  # the main process reports errors; the others only exit with the code
            return run_training(args)
        except LLMOpsError as exc:
            sys.stderr.write(f"rank {os.environ['RANK']}: {exc.message}\n")
            return exc.exit_code
    return run_training(args)


if __name__ == "__main__":
    code = run_script(main, title="train-on-self-hosted-gpu")
    launch.write_status(code)
    raise SystemExit(code)
