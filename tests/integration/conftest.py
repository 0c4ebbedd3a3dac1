"""Integration tests: real control plane + real Prometheus (fixtures from tests/conftest.py), real model servers."""
