"""Kebab-case flags are canonical in every script (issue 15): ``--help`` and usage show ``--a-b`` first; any
``--a_b`` spelling parses as ``--a-b`` (the seed article's ``--model_name`` / ``--output_dir`` / ``--model_dir`` /
``--eval_data`` stay listed as its documented aliases); prefix abbreviations stay unambiguous."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from llmops.cli import ALIAS_NOTE, kebab_argv, kebab_flags, parse_args

ROOT = Path(__file__).resolve().parents[2]
SEED_ALIASES = {"--model_name", "--output_dir", "--model_dir", "--eval_data"}


def _parser(script: Path):
    if script.stem == "train":
        from llmops.train.config import build_parser

        return build_parser()
    name = f"_kebab_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        return module.build_parser()
    finally:
        del sys.modules[name]


SCRIPTS = sorted([*(ROOT / "scripts").glob("*.py"), *(ROOT / "bin").glob("*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_shows_kebab_case_first_and_only_the_seed_aliases(script):
    parser = kebab_flags(_parser(script))
    for action in parser._actions:
        if action.option_strings:
            assert "_" not in action.option_strings[0], action.option_strings
    text = " ".join(parser.format_help().split())
    assert ALIAS_NOTE in text
    shown = set(re.findall(r"--[a-z0-9]+(?:_[a-z0-9]+)+", text.replace(ALIAS_NOTE, "")))
    assert shown <= SEED_ALIASES, shown


def test_snake_case_spellings_parse_as_the_kebab_flag(monkeypatch):
    for var in ("INPUT_LEARNING_RATE", "INPUT_MAX_STEPS", "INPUT_MODEL_NAME", "INPUT_OUTPUT_DIR", "INPUT_DATASET"):
        monkeypatch.delenv(var, raising=False)
    from llmops.train.config import build_parser

    args = parse_args(build_parser(), ["--model_name", "m", "--dataset", "d.jsonl", "--output_dir", "out",
                                       "--learning_rate", "0.5", "--max_steps=7", "--lora_r", "4"])
    assert (args.model_name, args.output_dir, args.learning_rate, args.max_steps, args.lora_r) == \
        ("m", "out", 0.5, 7, 4)
    args = parse_args(build_parser(), ["--model-name", "m", "--dataset", "d", "--output-dir", "o", "--learning", "2"])
    assert args.learning_rate == 2  # a prefix is still one option, not two spellings of it


def test_the_rewrite_touches_only_known_flags():
    from llmops.train.config import build_parser

    parser = build_parser()
    assert kebab_argv(parser, ["--max_steps", "3", "--not_a_flag", "x", "--", "--lora_r"]) == \
        ["--max-steps", "3", "--not_a_flag", "x", "--", "--lora_r"]
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["--model-name", "m", "--dataset", "d", "--output-dir", "o", "--not_a_flag", "1"])
