"""One of each (issue 15): one YAML-or-JSON loader with one error class and one message shape for every config file
(canary queries, gate thresholds, price tables), one comma/newline splitter, one rate helper (None, never NaN, when
nothing was counted), one PromQL renderer (escape, namespace check, placeholder errors) for canary and dashboards."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmops.canary import queries as canary_queries
from llmops.canary import stats
from llmops.canary.decision import parse_steps
from llmops.errors import InputError, UsageError
from llmops.eval.config import build_config
from llmops.inputs import split_list
from llmops.monitoring import queries as promql
from llmops.monitoring.cost import PriceTable

ROOT = Path(__file__).resolve().parents[2]
LOADERS = {
    "queries file": lambda p: canary_queries.read(str(p)),
    "thresholds file": lambda p: build_config([str(p)]),
    "price table": PriceTable.load,
}


@pytest.mark.parametrize("what", sorted(LOADERS))
@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "a: [1\nb: 2\n", "{what} {path} is not valid YAML (line 2): expected ',' or ']'"),
    ("bad.json", '{"a": ', "{what} {path} is not valid JSON: Expecting value"),
])
def test_every_config_file_fails_the_same_way(tmp_path, what, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as err:
        LOADERS[what](path)
    assert err.value.message.startswith(message.format(what=what, path=path)), err.value.message
    assert err.value.file == str(path) and err.value.exit_code == 2


def test_a_file_that_is_not_there_is_named():
    for what in ("queries file", "price table"):
        with pytest.raises(InputError, match=f"cannot read {what} nope.yaml: it does not exist"):
            LOADERS[what]("nope.yaml")


def test_the_one_loader_is_the_only_one():
    """No other module parses YAML/JSON config files by suffix on its own."""
    own = []
    for path in (ROOT / "llmops").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "inputs.py" and "yaml.safe_load" in text and 'suffix' in text and ".json" in text:
            own.append(str(path.relative_to(ROOT)))
    assert not own


def test_one_splitter():
    assert split_list(" a, b\nc,,\n") == ["a", "b", "c"]
    assert split_list(None) == [] and split_list(["x ", ""]) == ["x"]
    assert split_list("a;b,c", ",;") == ["a", "b", "c"]
    assert parse_steps("5,\n10, 50\n100") == (5, 10, 50, 100)
    assert build_config(["accuracy>=0.5; bleu>=10\nchrf>=20"]).thresholds.keys() == {"accuracy", "bleu", "chrf"}


def test_one_rate_none_when_nothing_was_counted():
    assert stats.rate(0, 0) is None and stats.rate(1, 4) == 0.25
    assert stats.worse_than(0, 0, 1, 10, 0.0, 0.05).canary_rate is None


def test_one_promql_renderer():
    assert canary_queries.render is promql.fill
    fill = promql.fill('x{{v="{version}", d="{deployment}", ns=~"{namespace}"}}[{window}]', version='v"1',
                       window="30s", deployment="a\\b")
    assert fill == 'x{v="v\\"1", d="a\\\\b", ns=~".*"}[30s]'
    with pytest.raises(UsageError, match="namespace must be"):  # exit 2 in a script ...
        promql.fill("x", version="v", window="1s", namespace="A B")
    with pytest.raises(ValueError, match="unknown placeholder 'nope'"):  # ... a ValueError for dashboard code
        canary_queries.render("x{nope}", version="v", window="1s", namespace="", deployment="d")
    tree = ast.parse((ROOT / "llmops/canary/queries.py").read_text())
    assert not [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in ("render", "escape")]
