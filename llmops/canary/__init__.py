"""canary-step: shift traffic to a canary gradually and let Prometheus decide, statistically.

Modules: ``routers`` (traffic providers, one file each, by name), ``prom`` (Prometheus queries), ``queries``
(PromQL templates), ``sequential`` (tests pooled over the whole canary), ``stats`` (the per-window exact tests they
are built from, kept as the baseline), ``buckets`` (histograms as counts), ``judge`` (one window's counts + the
pooled evidence, explained; pure), ``analysis`` (a live window from Prometheus), ``decision`` (promote / continue /
rollback and the rules for advancing), ``whatif`` (replay windows offline), ``state`` (progress on the canary
Deployment), ``runner`` (the step and run modes, always leaving traffic safe), ``report`` (record, outputs,
summary), ``kube`` (API access).
"""
