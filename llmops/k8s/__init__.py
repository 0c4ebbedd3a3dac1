"""Kubernetes from CI: change a Deployment, wait for it the way kubectl does, verify it, undo it when it is bad.

Modules (each usable on its own; kubectl-promote and the canary step share them):

- ``client``       ``Kube``, the one client of both actions, and ``connect()`` (kubeconfig file, kubeconfig secret,
                   in-cluster config: the kubeconfig loading lives here); every call with a timeout, counted,
                   retried with backoff on 409/429/5xx/connection errors for up to a retry budget; API errors
                   mapped to LLMOpsError with the fix (404 names what exists, 403 names the missing RBAC verb).
- ``annotations``  the one prefix (``llmops.dev/``) and every annotation key we write, each documented.
- ``rollout``      ``rollout_status`` (kubectl's DeploymentStatusViewer), ``wait_for_rollout`` (a watch,
                   re-established on expiry and 410 Gone), ``undo`` (kubectl rollout undo).
- ``change``       which container, the patch that sets image / MODEL_VERSION / MODEL_URI / annotations, diffs.
- ``lock``         the Lease lock with a heartbeat and a short TTL, and the journal of an interrupted run.
- ``rbac``         the verbs we need (deploy/rbac.yaml grants exactly these), checked before anything is written.
- ``health``       HTTP health check, the version proof (/health, /v1/models) and smoke completion.
- ``verdict``      reading evaluate-and-gate's verdict JSON defensively, tied to the model it is for.
- ``promote``      the strategy package's options, outcome and dispatch; ``rolling`` and ``bluegreen`` the two
                   strategies beside it; ``primitives`` the read / write / lock / undo steps they share.

``kubernetes`` is imported inside functions only, so importing this package is cheap.
"""
