"""Integration tests: real control plane + real Prometheus fixtures."""

from tests.infra.fixtures import *  # noqa: F403
