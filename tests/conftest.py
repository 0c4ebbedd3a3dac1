"""Fixtures shared by every test folder: the real Kubernetes control plane and Prometheus (tests/infra).

Defined once here so that integration and e2e tests share one session-scoped cluster; nothing starts unless a
test asks for it.

The suite runs in parallel with pytest-xdist (``-n`` and ``--dist loadscope`` in pyproject's addopts: each module,
or class, runs whole on one worker, so module fixtures are built once). Rules every test must keep:

* Every worker is its own pytest session with its own ``k8s_cluster``, Prometheus servers and ``tmp_path``. Faults
  a test injects (``k8s_cluster.stop_apiserver()``, kubelet behaviours) only reach its own worker; still restore
  them in ``finally``.
* No fixed ports: servers bind port 0, or take ``tests.infra.tools.free_port()`` (a per-worker block of ports).
* No shared writable paths: write under ``tmp_path`` / ``tmp_path_factory``, never into the checkout or ``~``.
  A cache shared across workers and runs (e.g. ``smollm2_dir``, ``tests.infra.models``) is keyed by a content
  hash, built under an ``flock`` into a ``.partial`` folder renamed into place, and read-only for tests.
* No order between modules: a test may rely only on fixtures, never on another module having run first.
* Wait on a condition (``tests.infra.tools.wait_until``, Prometheus' ``wait_for_value``), not on a fixed sleep,
  and give waits room for a loaded machine: CI runs several workers on 2 cores.
* ``--dist loadscope`` keeps a module's tests on one worker but gives no order between modules and may run any two
  modules at the same time on different workers: a resource two modules must not use at once has to become per
  worker (like the cluster) rather than shared.
* Time limits: the suite's 600 s ``timeout`` applies per test; a test that legitimately runs longer beside other
  workers (the SmolLM2 story) sets ``@pytest.mark.timeout(...)`` to its own subprocess limit.

``python -m pytest -p no:xdist`` (or ``-n 0``) runs everything in one process, e.g. under a debugger.
"""
from tests.infra.fixtures import *  # noqa: F403
