"""Kubernetes from CI: change a Deployment, wait for it the way kubectl does, verify it, undo it when it is bad.

Modules (each usable on its own; kubectl-promote and the canary step share them):

- ``client``   ``connect()``: ApiClient from a kubeconfig file, a kubeconfig secret or in-cluster config; every call
               with a timeout, counted, retried with backoff on 409/429/5xx/connection errors; API errors mapped to
               LLMOpsError with the fix (404 names what exists, 403 names the missing RBAC verb).
- ``rollout``  ``rollout_status`` (kubectl's DeploymentStatusViewer), ``wait_for_rollout`` (a watch, re-established
               on expiry and 410 Gone), ``undo`` (kubectl rollout undo: previous ReplicaSet's template).
- ``change``   which container, the patch that sets image / MODEL_VERSION / MODEL_URI / annotations, diffs.
- ``lock``     a lease annotation on the target object, taken with a resourceVersion-guarded write.
- ``health``   HTTP health check and smoke completion with retries inside a time budget.
- ``verdict``  reading evaluate-and-gate's verdict JSON defensively.
- ``promote``  the rolling promotion and the rollback mode; ``bluegreen`` the blue-green strategy.

``kubernetes`` is imported inside functions only, so importing this package is cheap.
"""
