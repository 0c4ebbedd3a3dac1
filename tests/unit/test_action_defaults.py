"""Every action's defaults have one source: the script's argparse parser (which takes them from the library's
dataclasses where there is one). For each action.yml input that reaches a flag, the documented default must be the
parser's, and every input must reach a flag of the script the action runs."""
from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from llmops import gha

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = sorted(p.parent.name for p in (ROOT / "actions").glob("*/action.yml"))
RUNNER_INPUTS = {"python", "install"}  # how the action finds its interpreter, not script options
# Inputs whose action default deliberately differs from the plain script's (a runner has other defaults).
ACTION_ONLY_DEFAULTS = {"train-on-self-hosted-gpu": {"output-dir", "mixed-precision"}}


def _spec(action: str) -> dict:
    return yaml.safe_load((ROOT / "actions" / action / "action.yml").read_text())


def _run_step(spec: dict) -> dict:
    return next(s for s in spec["runs"]["steps"] if any(k.startswith("INPUT_") for k in (s.get("env") or {})))


def _parser(spec: dict) -> argparse.ArgumentParser:
    script = re.search(r"scripts/(\w+)\.py", _run_step(spec)["run"]).group(1)
    if script == "train":
        from llmops.train.config import build_parser
        return build_parser()
    loader = importlib.util.spec_from_file_location(f"_action_script_{script}", ROOT / "scripts" / f"{script}.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.build_parser()


def _same(documented: object, flag: argparse.Action) -> bool:
    """The documented text, read the way the script reads it (the flag's own ``type``), equals its default."""
    default = flag.default
    if isinstance(default, bool):
        return str(documented).lower() == str(default).lower()
    value: object = str(documented)
    if flag.type is not None:
        try:
            value = flag.type(str(documented))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            return False
    if isinstance(default, (list, tuple)):
        return [str(v) for v in default] == [v.strip() for v in re.split(r"[,\n]", str(documented)) if v.strip()]
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return float(value) == float(default)
    return value == default


@pytest.mark.parametrize("action", ACTIONS)
def test_action_defaults_are_the_scripts_defaults(action):
    spec = _spec(action)
    env = _run_step(spec)["env"]
    flags = {a.dest: a for a in _parser(spec)._actions if a.option_strings and a.dest != "help"}
    wrong, unmapped = [], []
    for name, item in spec.get("inputs", {}).items():
        if name in RUNNER_INPUTS:
            continue
        var = next((k for k, v in env.items() if v == f"${{{{ inputs.{name} }}}}"), None)
        dest = var[len("INPUT_"):].lower() if var else None
        if dest not in flags or gha.env_name(dest) != var:
            unmapped.append(name)
            continue
        if "default" not in item or name in ACTION_ONLY_DEFAULTS.get(action, ()):
            continue
        if not _same(item["default"], flags[dest]):
            wrong.append(f"{name}: action.yml {item['default']!r}, script {flags[dest].default!r}")
    assert not unmapped, f"{action}: inputs that reach no flag of its script: {unmapped}"
    assert not wrong, f"{action}: defaults disagree: {wrong}"


def test_kubectl_promote_defaults_come_from_the_library():
    from llmops.k8s.health import HealthSpec
    from llmops.k8s.promote import Options

    spec = _spec("kubectl-promote")
    flags = {a.dest: a.default for a in _parser(spec)._actions if a.option_strings}
    for dest, source in (("timeout", Options.timeout), ("lock_ttl", Options.lock_ttl),
                         ("scale_down_delay", Options.scale_down_delay), ("lock_wait", Options.lock_wait),
                         ("health_timeout", HealthSpec.budget), ("health_interval", HealthSpec.interval),
                         ("smoke_prompt", HealthSpec.prompt), ("strategy", Options.strategy)):
        assert flags[dest] == source, dest
