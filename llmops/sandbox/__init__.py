"""The local sandbox: a real Kubernetes control plane, Debian's Prometheus, reference-server processes standing in
for pods, and live traffic, on this machine (``world.Sandbox``, for ``run_pipeline.py --cluster sandbox``); the
integration tests run on the same pieces (``tests/infra`` re-exports them)."""
