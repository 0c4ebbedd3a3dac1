"""Monitoring kit for LLM servers: Prometheus metrics, alert rules, PromQL queries, JSON logs, cost tracking.

Modules: ``metrics`` (the instruments, one CollectorRegistry per server), ``rules`` (alert rule YAML and the
PrometheusRule manifest), ``queries`` (PromQL templates the canary analysis renders), ``logs`` (JSON request and
event logger), ``cost`` (price table and cost tracker).

Metric names and labels (the contract the canary step, the alert rules and the dashboards rely on)
--------------------------------------------------------------------------------------------------
Every series carries ``model_version`` (the served model's version, from ``llmops-model.json``). No other label
has more than a handful of values; prompts, users and request ids are never labels.

==========================================  =========  =====================================  =====================
metric (as scraped)                          type       labels                                 meaning
==========================================  =========  =====================================  =====================
llm_requests_total                           counter    model_version, endpoint, status        inference requests
llm_request_duration_seconds_bucket/_sum/..  histogram  model_version                          whole request latency
llm_time_to_first_token_seconds_bucket/..    histogram  model_version                          prefill + first token
llm_time_per_output_token_seconds_bucket/..  histogram  model_version                          decode time per token
llm_input_tokens_total                       counter    model_version                          prompt tokens
llm_output_tokens_total                      counter    model_version                          generated tokens
llm_cost_usd_total                           counter    model_version                          token + compute cost
llm_quality_score                            gauge      model_version                          online quality 0..1
llm_feedback_total                           counter    model_version                          feedback received
llm_model_info                               gauge      model_version, model_name               1 once loaded
llm_model_loaded                             gauge      model_version                          1 loaded, 0 loading
llm_requests_in_flight                       gauge      model_version                          concurrent requests
==========================================  =========  =====================================  =====================

Label values:
    ``endpoint``: ``completions`` (/v1/completions) or ``chat`` (/v1/chat/completions).
    ``status``: ``ok`` (2xx), ``invalid`` (4xx: the client sent a bad request), ``error`` (5xx: the server failed,
    including injected faults). Error rate = ``status="error"`` / all statuses.

Latency is observed for every inference request (ok, invalid and error). Time to first token is measured with a
generation streamer (the moment the first new token exists), so it is real even though responses are not streamed;
time per output token is ``(generation time - TTFT) / (output tokens - 1)`` and is only observed when more than one
token was generated. Cost per request = input tokens x input price + output tokens x output price + generation
seconds x GPU-hour price / 3600, from the price table (``cost.PriceTable``). The quality gauge is the mean of the
last N scores posted to ``/v1/feedback`` (or the value fixed with ``--quality-score``).

In Kubernetes the scrape adds ``namespace`` (and ``pod``) labels; the PromQL templates in ``queries`` match
``namespace=~"{namespace}"`` so that rendering without a namespace (``.*``) also matches series that have none.
"""
