"""`python bin/run_pipeline.py --cluster sandbox` as a user runs it, on the tiny model with short windows: after
the gate the same run goes to staging, walks a canary with live traffic, promotes it to production, then rolls a
deliberately faulty canary back, and tears everything down, at the end and on Ctrl-C. The sandbox is the run's own
(its own control plane, Prometheus, free ports and temp folders), so this module shares nothing with other tests.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import tools

SANDBOX = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.slow]


def sandbox(test):
    for mark in SANDBOX:
        test = mark(test)
    return test

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--base-model", "tiny", "--quick", "--cluster", "sandbox", "--canary-steps", "50,100",
        "--canary-interval", "4s", "--canary-min-requests", "10", "--traffic-rate", "20"]
WINDOW = re.compile(r"^ {4}weight +(\d+)%: stable (\d+) requests / (\d+) errors, canary (\d+) / (\d+): (\w+) -> (\w+)")


def start(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # its own session, like a shell's foreground job: Ctrl-C reaches this process group only
    return subprocess.Popen([sys.executable, str(ROOT / "bin" / "run_pipeline.py"), *FAST, *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def windows(text: str) -> list[tuple]:
    return [m.groups() for line in text.splitlines() if (m := WINDOW.match(line))]


def section(text: str, start: str, end: str | None = None) -> str:
    text = text[text.index(start):]
    return text[:text.index(end)] if end else text


def leftovers(state: dict) -> list[str]:
    """Processes still running that the sandbox started: by id, or by a command line naming its folders/ports."""
    ports = [f"--port {p}" for p in state["server_ports"]]
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
        except OSError:
            continue
        if zombie:
            continue
        if int(pid) in state["processes"] or any(f in cmd for f in state["folders"]) or \
                ("serve.py" in cmd and any(cmd.rstrip().endswith(p) or f"{p} " in cmd for p in ports)):
            found.append(f"{pid}: {cmd[:200]}")
    return found


def canary_weight(kubeconfig: str) -> int:
    """The sandbox's canary share as its Ingress says it (read independently of llmops.canary)."""
    from kubernetes import client, config

    from tests.infra.traffic import nginx_canary_weight

    with config.new_client_from_config(config_file=kubeconfig) as api:
        return nginx_canary_weight(client.NetworkingV1Api(api), "production")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tools.k8s_bin_dir()  # skip (fail under CI) when the control plane is not built
    tools.prometheus_bins()
    out = tmp_path_factory.mktemp("sandbox")
    proc = start("--out-dir", str(out), "--model-version", "v1")
    stdout, _ = proc.communicate(timeout=900)
    return out, proc.returncode, stdout


@sandbox
def test_the_good_canary_reaches_100_percent_and_production_runs_the_new_version(release):
    out, code, stdout = release
    assert code == 0, stdout[-8000:]
    assert "kubectl-promote to staging: staging/llm-server -> v1" in stdout
    assert "integration test against the staging server" in stdout
    good = windows(section(stdout, "canary: production/llm-canary gets v1", "a deliberately bad canary"))
    assert good, stdout[-6000:]
    assert good[-1][0] == "100" and good[-1][6] == "promote"
    assert {w[0] for w in good} == {"50", "100"}
    assert all(w[6] != "rollback" for w in good)
    assert sum(int(w[3]) for w in good) >= 20  # the canary served live requests (Prometheus's counts)
    assert "production: production/llm-stable runs v1" in stdout
    state = json.loads((out / "sandbox.json").read_text())
    assert state["deployments"]["production/llm-stable"]["model_version"] == "v1"
    assert state["health"] == {"staging": "v1", "stable": "v1"}  # the servers themselves answer as v1
    assert state["requests_sent"]["canary"] > 0 and state["requests_sent"]["stable"] > 0


@sandbox
def test_the_bad_canary_is_rolled_back_with_all_traffic_on_stable(release):
    out, code, stdout = release
    assert code == 0, stdout[-8000:]
    bad = windows(section(stdout, "a deliberately bad canary: v1-faulty", "==> what the gates decided"))
    assert bad and bad[-1][6] == "rollback", stdout[-6000:]
    assert all(w[0] != "100" for w in bad)
    assert sum(int(w[4]) for w in bad) > 0  # its errors were seen
    assert "rolled back: all traffic on llm-stable again (canary weight 0); production keeps v1" in stdout
    state = json.loads((out / "sandbox.json").read_text())
    assert state["canary_weight"] == 0
    assert state["deployments"]["production/llm-canary"]["replicas"] == 0
    assert state["deployments"]["production/llm-canary"]["faults"] == []  # the fault left its template again
    assert state["deployments"]["production/llm-stable"]["model_version"] == "v1"
    assert state["health"]["stable"] == "v1"


@sandbox
def test_nothing_is_left_running_after_the_run(release):
    out, code, stdout = release
    assert code == 0
    assert "sandbox stopped" in stdout
    state = json.loads((out / "sandbox.json").read_text())
    assert len(state["processes"]) == 4  # etcd, kube-apiserver, kube-controller-manager, prometheus
    assert leftovers(state) == []
    assert not any(Path(f).exists() for f in state["folders"])


@sandbox
def test_ctrl_c_during_the_canary_tears_everything_down(release):
    out, code, _ = release
    assert code == 0
    proc = start("--out-dir", str(out), "--model-version", "v2", "--baseline", str(out / "production" / "verdict.json"))
    seen, kubeconfig = [], None
    try:
        for line in proc.stdout:
            seen.append(line)
            kubeconfig = kubeconfig or (re.search(r"kubeconfig (\S+);", line) or [None, None])[1]
            if "(once per window)" in line:  # canary-step is about to walk the weights
                break
        assert kubeconfig and any("(once per window)" in line for line in seen), "".join(seen)[-4000:]
        tools.wait_until(lambda: canary_weight(kubeconfig) > 0, 120, 0.2, "canary-step to move traffic")
        state = json.loads((out / "sandbox.json").read_text())
        assert state["folders"] and leftovers(state)  # it is running now
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(seen) + rest
    assert proc.returncode == 130, text[-4000:]
    record = json.loads((out / "canary" / "canary-v2.json").read_text())  # canary-step's own record of the walk
    assert record["decision"] == "cancelled" and record["weight"] == 0
    assert "interrupted: all traffic returned to stable" in record["actions"]
    assert "sandbox stopped" in text
    assert leftovers(state) == []
    assert not any(Path(f).exists() for f in state["folders"])
    assert "Traceback" not in text


def test_a_missing_control_plane_is_exit_2_with_the_command_that_builds_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "LLMOPS_K8S"))}
    env.update(PYTHONPATH=str(ROOT), LLMOPS_K8S_CACHE=str(tmp_path / "empty"))
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "run_pipeline.py"), *FAST, "--out-dir",
                           str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "bash tools/setup.sh" in text and str(tmp_path / "empty") in text
    assert "validate-data" not in proc.stdout  # nothing ran first
    assert "Traceback" not in text
