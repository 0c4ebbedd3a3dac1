"""Offline evaluation and the noise-aware quality gate behind the evaluate-and-gate action.

- ``data``: eval rows -> samples (stable ids, sub-sampling, data hash), predictions files
- ``backends``: local model folder (batched generation, reference scoring) and OpenAI-compatible endpoint
- ``metric_base`` / ``metrics`` / ``metrics_text`` / ``metrics_system`` / ``hf_plugin``: the metric interface, the
  registry (names, aliases, look-ups) and the metrics
- ``stats``: bootstrap resampling, paired bootstrap, McNemar
- ``config`` / ``gate``: thresholds and gate policy; per-metric pass/fail/inconclusive against a baseline verdict
- ``runner`` / ``report``: the verdict JSON, the step summary and the step outputs
"""
