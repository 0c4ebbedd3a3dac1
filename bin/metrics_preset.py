"""Print a canary metrics preset: its PromQL templates as a queries file, or rendered for one side to try by hand.

    python bin/metrics_preset.py vllm > queries.yaml          # the templates, to edit into a queries file
    python bin/metrics_preset.py tgi --render llm-canary --namespace prod --window 5m
    python bin/metrics_preset.py sglang --selection version --render llm-canary --version v2
    python bin/metrics_preset.py vllm --canary-selector 'pod=~"llm-canary-.*"' --render canary

Presets: llmops, vllm, tgi, sglang, triton, istio, nginx (llmops.canary.presets documents each). canary-step takes
a preset directly (``metrics-preset: vllm``); this prints what it runs. The output is YAML (``name: promql``), with
the checks the server cannot measure and its histogram bucket bounds as comments.
Exit codes: 0 ok, 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from llmops.cli import parse_args, run_script
from llmops.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    from llmops.canary import presets

    p = argparse.ArgumentParser(prog="metrics_preset.py", description=__doc__.split("\n\n")[0])
    p.add_argument("preset", choices=list(presets.PRESETS))
    p.add_argument("--selection", choices=("pods", "version"), default=None,
                   help="tell canary from stable by Deployment pods or by the version label (default: the "
                        "preset's: version for llmops, pods for the others)")
    p.add_argument("--canary-selector", default="", help="explicit PromQL label matchers of the canary side")
    p.add_argument("--stable-selector", default="", help="explicit PromQL label matchers of the stable side")
    p.add_argument("--render", default="", help="render for this Deployment (or 'canary'/'stable' with selectors)")
    p.add_argument("--version", default="v", help="model version to render with (version selection)")
    p.add_argument("--namespace", default="", help="namespace to render with (default: any)")
    p.add_argument("--window", default="5m", help="window to render with, a PromQL duration")
    p.add_argument("--extras", action="store_true", help="also the dashboard-only queries (tokens/s, ...)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from llmops.canary import presets, queries

    args = parse_args(build_parser(), argv)
    preset = presets.get(args.preset)
    if bool(args.canary_selector) != bool(args.stable_selector):
        raise UsageError("give both --canary-selector and --stable-selector, or neither")
    if args.canary_selector:
        if args.render not in ("canary", "stable"):
            raise UsageError("explicit selectors are per side: add --render canary or --render stable")
        chosen = args.canary_selector if args.render == "canary" else args.stable_selector
        templates = presets.side_templates(args.preset, chosen, extras=args.extras)
        presets.check_distinct(presets.side_templates(args.preset, args.canary_selector),
                               presets.side_templates(args.preset, args.stable_selector))
    else:
        templates = presets.templates(args.preset, args.selection, extras=args.extras)
    lines = [f"# metrics-preset {preset.name}: {preset.title}", f"# {preset.notes}" if preset.notes else ""]
    lines += [f"# cannot measure {name}: {why}" for name, why in preset.missing.items()]
    lines += [f"# buckets of {metric}: {', '.join(f'{b:g}' for b in bounds)}"
              for metric, bounds in preset.buckets.items()]
    for name, template in templates.items():
        if args.render:
            template = queries.render(template, version=args.version, window=args.window,
                                      namespace=args.namespace, deployment=presets.regex_escape(args.render))
        lines.append(f"{name}: {json.dumps(template)}")
    print("\n".join(line for line in lines if line))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, title="metrics-preset"))
