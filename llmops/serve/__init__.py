"""Reference model server for tests, demos, canary drills and the deploy manifests.

``server.ModelServer`` (lifecycle, inference, graceful drain; OpenAI-compatible completions/chat, /health,
/metrics), ``http`` (the Starlette app uvicorn serves), ``engines`` (continuous batching over a transformers model;
the echo fake on the event loop; stop sequences and token accounting), ``generators`` (a local transformers model
folder, or the deterministic ``EchoGenerator`` fake), ``faults`` (error/latency injection from ``LLMOPS_FAULT_*``
env vars), ``openai_api`` (request validation, response and stream-chunk shapes). Run it with
``python bin/serve.py --model-dir DIR`` (or ``--echo``).
"""
