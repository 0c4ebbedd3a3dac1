"""Model-server processes and the weight-following load generator for canary tests: ``llmops.sandbox.traffic``
(shared with ``run_pipeline.py --cluster sandbox``), and the stable/canary Deployment manifest those tests create."""
from llmops.sandbox.traffic import EchoServer, ModelPods, Splitter, nginx_canary_weight  # noqa: F401 - re-exported


def deployment(name: str, version: str, replicas: int) -> dict:
    """A canary test's Deployment ``name`` (pods labelled ``app: llm``, ``track: <name>``) serving ``model:<version>``
    with MODEL_VERSION set, as the canary tests' ``llm-stable`` / ``llm-canary`` pair."""
    labels = {"app": "llm", "track": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "server", "image": f"model:{version}",
                                                           "env": [{"name": "MODEL_VERSION", "value": version}]}]}}}}
