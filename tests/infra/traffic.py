"""Model-server processes and the weight-following load generator for canary tests: ``llmops.sandbox.traffic``
(shared with ``run_pipeline.py --cluster sandbox``)."""
from llmops.sandbox.traffic import EchoServer, ModelPods, Splitter, nginx_canary_weight  # noqa: F401 - re-exported
