"""action.yml and scripts/train.py agree: every input reaches a flag, documented defaults are the script's."""
from __future__ import annotations

from pathlib import Path

import yaml

from llmops import gha
from llmops.train.config import build_parser

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "actions/train-on-self-hosted-gpu/action.yml").read_text())
# Inputs whose action default deliberately differs from the plain script's.
ACTION_ONLY_DEFAULTS = {"output-dir", "mixed-precision"}


def _flags():
    return {a.dest: a for a in build_parser()._actions if a.option_strings and a.dest != "help"}


def test_every_input_is_passed_to_a_flag_of_the_script():
    env = SPEC["runs"]["steps"][1]["env"]
    flags = _flags()
    for name in SPEC["inputs"]:
        if name in ("python", "install"):
            continue
        var = next(k for k, v in env.items() if v == f"${{{{ inputs.{name} }}}}")
        dest = var[len("INPUT_"):].lower()
        assert dest in flags, f"input {name} is passed as {var} but the script has no such option"
        assert gha.env_name(dest) == var


def test_documented_defaults_are_the_script_defaults():
    flags = _flags()
    env = SPEC["runs"]["steps"][1]["env"]
    for name, spec in SPEC["inputs"].items():
        if name in ("python", "install") or name in ACTION_ONLY_DEFAULTS or "default" not in spec:
            continue
        dest = next(k for k, v in env.items() if v == f"${{{{ inputs.{name} }}}}")[len("INPUT_"):].lower()
        default = flags[dest].default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert shown == str(spec["default"]), f"{name}: action default {spec['default']!r}, script default {default!r}"


def test_the_action_launches_through_accelerate():
    run = SPEC["runs"]["steps"][1]["run"]
    assert "scripts/train.py" in run and "--launch" in run


def test_the_multi_node_template_gives_each_machine_its_rank_and_the_same_rendezvous():
    wf = yaml.safe_load((ROOT / "workflows-templates/train-multi-node.yml").read_text())
    job = wf["jobs"]["train"]
    step = next(s for s in job["steps"] if "train-on-self-hosted-gpu" in s.get("uses", ""))
    assert set(step["with"]) <= set(SPEC["inputs"]), set(step["with"]) - set(SPEC["inputs"])
    ranks = job["strategy"]["matrix"]["machine-rank"]
    assert ranks == list(range(int(step["with"]["num-machines"])))
    assert step["with"]["machine-rank"] == "${{ matrix.machine-rank }}"
    assert "${{ matrix.machine-rank }}" in " ".join(job["runs-on"]) and {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert step["with"]["main-process-ip"] and step["with"]["main-process-port"]
    assert job["strategy"]["fail-fast"] is True and job["timeout-minutes"]
