"""Every annotation key llmops-actions writes on a user's objects, under one prefix, each with what it means.

One prefix, ``llmops.dev/``. Releases before it wrote the promotion records under ``llmops-actions/``: those keys
are still read (``get``) and removed when a promotion rewrites the record, never written again.

Deployment (a promotion's record; the Deployment controller copies these onto the ReplicaSet of each revision, so
``kubectl rollout history`` and the ReplicaSets say which model, commit, run and verdict each revision came from):

- ``model-version``     the model version promoted (``--model-version``)
- ``model-uri``         the model URI promoted (``--model-uri``)
- ``image``             the container image after the promotion
- ``git-sha``           the commit the promotion ran from
- ``run-url``           the workflow run that promoted it
- ``verdict-sha256``    sha256 of the evaluate-and-gate verdict file the promotion used
- ``verdict-result``    that verdict's result (pass / inconclusive), or ``forced``
- ``promoted-at``       UTC time of the promotion
- ``promoted-by``       ``canary-step`` when a canary's last weight promoted the stable Deployment

Pod template (``version-via: annotation``): ``model-version`` and ``model-uri``, read by the model server.

Service (blue-green): ``active-color``, ``previous-color``, ``model-version`` (of the active colour), ``switched-at``.

Lease ``llmops-promote-<kind>-<name>`` (the promotion lock, see ``lock``): ``promotion``, the journal of a promotion
in flight (JSON: state promoting / rolling-back, the revision, pod-template-hash and version live before it). Kept
on the Lease, not the Deployment, so ``kubectl rollout undo`` never copies it back from a ReplicaSet.

Canary step: ``canary-state`` (canary Deployment: the walk's progress), ``canary-original-replicas`` (stable
Deployment, replicas router), ``canary-of`` (the canary Ingress of the NGINX router: the route it belongs to).
"""
from __future__ import annotations

PREFIX = "llmops.dev/"
LEGACY_PREFIX = "llmops-actions/"

RECORD_KEYS = ("model-version", "model-uri", "image", "git-sha", "run-url", "verdict-sha256", "verdict-result",
               "promoted-at")
MODEL_VERSION = PREFIX + "model-version"
MODEL_URI = PREFIX + "model-uri"
PROMOTED_BY = PREFIX + "promoted-by"
ACTIVE_COLOR, PREVIOUS_COLOR, SWITCHED_AT = PREFIX + "active-color", PREFIX + "previous-color", PREFIX + "switched-at"
PROMOTION = PREFIX + "promotion"
CANARY_STATE = PREFIX + "canary-state"
CANARY_ORIGINAL_REPLICAS = PREFIX + "canary-original-replicas"
CANARY_OF = PREFIX + "canary-of"

WRITTEN = frozenset({*(PREFIX + k for k in RECORD_KEYS), PROMOTED_BY, ACTIVE_COLOR, PREVIOUS_COLOR, SWITCHED_AT,
                     PROMOTION, CANARY_STATE, CANARY_ORIGINAL_REPLICAS, CANARY_OF})


def legacy(key: str) -> str:
    """The pre-``llmops.dev/`` spelling of a key."""
    return LEGACY_PREFIX + key[len(PREFIX):] if key.startswith(PREFIX) else key


def get(annotations: dict | None, key: str) -> str | None:
    """The value under ``key``, else under its legacy spelling."""
    annotations = annotations or {}
    return annotations.get(key) or annotations.get(legacy(key))
