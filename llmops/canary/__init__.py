"""canary-step: shift traffic to a canary gradually and let Prometheus decide, statistically.

Modules: ``routers`` (traffic providers, one file each, by name), ``prom`` (Prometheus queries), ``queries``
(PromQL templates), ``stats`` (exact tests on counts), ``analysis`` (one window, explained), ``decision``
(promote / continue / rollback, Argo's rules), ``state`` (progress on the canary Deployment), ``runner`` (the
step and run modes, always leaving traffic safe), ``report`` (record, outputs, summary), ``kube`` (API access).
"""
