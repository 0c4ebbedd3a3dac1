"""Credentials in URLs (``http://user:pass@host``) reach the server as basic auth and nothing else: not the error
line, not the step summary, not canary-report.json or the verdict. Real loopback servers that record what they
get."""
from __future__ import annotations

import base64
import json

import pytest

from llmops.errors import InfraError, UsageError
from tests.security.conftest import send

PASSWORD = "pw-Hunter2-e81c4d"


def test_prometheus_url_credentials_go_as_basic_auth_and_appear_in_no_message(hostile):
    from llmops.canary.prom import Prometheus

    seen = []
    url = hostile(lambda req: (seen.append(req.headers.get("Authorization")), send(req, 503, b"down")))
    host = url.removeprefix("http://")
    prom = Prometheus(f"http://ci-reader:{PASSWORD}@{host}", timeout=2, retries=0)
    assert PASSWORD not in prom.url and "ci-reader" not in prom.url
    with pytest.raises(InfraError) as err:
        prom.check_online()
    assert PASSWORD not in str(err.value) and url in str(err.value)
    assert seen and seen[0] == "Basic " + base64.b64encode(f"ci-reader:{PASSWORD}".encode()).decode()
    with pytest.raises(UsageError) as bad:
        Prometheus(f"ftp://ci-reader:{PASSWORD}@{host}")
    assert PASSWORD not in str(bad.value)


def test_canary_step_error_and_summary_hold_no_url_password(runner):
    res = runner.run("canary_step.py", inputs={"provider": "replicas", "stable": "a", "canary": "b",
                                               "prometheus-url": f"prom.internal://ci:{PASSWORD}@prom:9090"})
    assert res.code == 2, res.log
    assert f"::add-mask::{PASSWORD}" in res.log
    leaked = [line for line in res.log.splitlines() if PASSWORD in line and not line.startswith("::add-mask::")]
    assert leaked == [] and PASSWORD not in res.summary and PASSWORD not in json.dumps(res.outputs)


def test_endpoint_url_credentials_stay_out_of_the_verdict(runner, hostile):
    seen = []

    def answer(req):
        seen.append(req.headers.get("Authorization"))
        send(req, 200, json.dumps({"choices": [{"text": "4"}]}).encode())

    host = hostile(answer).removeprefix("http://")
    data = runner.workspace / "eval.jsonl"
    data.write_text(json.dumps({"prompt": "2+2=", "reference": "4"}) + "\n")
    report = runner.workspace / "verdict.json"
    res = runner.run("evaluate_and_gate.py", "--endpoint", f"http://bot:{PASSWORD}@{host}", "--eval_data", str(data),
                     "--metrics", "accuracy", "--report", str(report), "--min-samples", "1",
                     env={"OPENAI_API_KEY": ""})
    assert res.code == 0, res.log[-2000:]
    assert seen[0] == "Basic " + base64.b64encode(f"bot:{PASSWORD}".encode()).decode()
    assert PASSWORD not in report.read_text() and PASSWORD not in res.summary
    assert json.loads(report.read_text())["model"]["endpoint"] == f"http://{host}"
