"""Fixtures shared by every test folder: the real Kubernetes control plane and Prometheus (tests/infra).

Defined once here so that integration and e2e tests share one session-scoped cluster; nothing starts unless a
test asks for it.

The suite runs in parallel with pytest-xdist (``pytest -n 3``; ``--dist loadscope`` and ``--no-loadscope-reorder``
are pyproject's addopts: each module, or class, runs whole on
one worker, so module fixtures are built once; modules with a ``slow`` test are handed out first, see
``pytest_collection_modifyitems``). Mark a test ``slow`` when it takes
more than a few seconds, so its module starts early. Rules every test must keep:

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


def pytest_collection_modifyitems(config, items):
    """Modules with a ``slow`` test first (a stable sort: each module stays whole and in order), so that with
    ``--no-loadscope-reorder`` the workers start on the long modules and the many short ones fill in behind them
    (xdist's default reorder, by number of tests, would leave a few long e2e modules for the end)."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)
