"""Fixtures shared by every test folder: the real Kubernetes control plane and Prometheus (tests/infra).

Defined once here so that integration and e2e tests share one session-scoped cluster; nothing starts unless a
test asks for it.
"""
from tests.infra.fixtures import *  # noqa: F403
