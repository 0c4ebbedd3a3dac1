"""Reference model server for tests, demos, canary drills and the deploy manifests.

``server.ModelServer`` (HTTP: OpenAI-compatible completions/chat, /health, /metrics), ``generators`` (a local
transformers model folder, or the deterministic ``EchoGenerator`` fake), ``faults`` (error/latency injection from
``LLMOPS_FAULT_*`` env vars), ``openai_api`` (request validation and response shapes). Run it with
``python scripts/serve.py --model-dir DIR`` (or ``--echo``).
"""
