"""The throw-away control plane (etcd + kube-apiserver + kube-controller-manager + test kubelet): moved to
``llmops.sandbox.cluster`` so that ``run_pipeline.py --cluster sandbox`` runs the same one; a missing build skips
(or, under CI, fails) the test that asks for it."""
from __future__ import annotations

from pathlib import Path

from llmops.sandbox import cluster as _cluster
from llmops.sandbox.cluster import CONTROLLERS, CRDS  # noqa: F401 - re-exported
from tests.infra import tools


class Cluster(_cluster.Cluster):
    __doc__ = _cluster.Cluster.__doc__

    def __init__(self, bin_dir: Path | None = None, startup_timeout: float = 60.0, keep_dir: bool = False):
        super().__init__(bin_dir or tools.k8s_bin_dir(), startup_timeout, keep_dir)

    def kubectl(self, *args: str, **kwargs):
        tools.kubectl_path()  # skip (or fail under CI) when kubectl is missing
        return super().kubectl(*args, **kwargs)
