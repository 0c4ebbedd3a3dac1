"""Where a canary's progress lives between windows and runs: a JSON annotation on the canary Deployment.

The annotation survives crashes, cancelled jobs and re-runs (a re-run resumes from the recorded weight) and the
finalize of every router (which removes routing objects, never the canary Deployment). It is tied to the canary's
version: a new version starts from the first weight.
"""
from __future__ import annotations

import json

from llmops.canary.decision import Progress
from llmops.canary.kube import Kube
from llmops.k8s.annotations import CANARY_STATE

ANNOTATION = CANARY_STATE


def load(kube: Kube, namespace: str, canary: str) -> Progress | None:
    obj = kube.read_deployment(namespace, canary)
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return None
    try:
        return Progress.from_dict(json.loads(raw))
    except (TypeError, ValueError, KeyError):
        return None  # unreadable (hand-edited): start over rather than guess


def save(kube: Kube, namespace: str, canary: str, progress: Progress) -> None:
    kube.annotate_deployment(namespace, canary, {ANNOTATION: json.dumps(progress.as_dict(), separators=(",", ":"))})
