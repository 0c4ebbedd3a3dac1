"""Sequential tests pooled over a canary's whole life: always-valid evidence that may be looked at every window.

Why sequential: the canary is judged after every window, so a fixed-sample test at level alpha, repeated k times,
falsely rolls back far more often than alpha (and one passing window after one failed one used to advance).
Each test here is an *e-process*: a product over windows of likelihood ratios that, while the canary is within its
limit, is a non-negative supermartingale, so by Ville's inequality P(it ever reaches 1/alpha) <= alpha however
often it is looked at and however the traffic split changes between windows. That controls the false-rollback
rate over the whole canary, not per window. (Chosen over group-sequential alpha spending because the number and
size of looks is not known in advance: low-traffic canaries take many small windows, step mode looks once per
workflow run.)

``RelativeTest``  "is the canary's rate of events (errors, or requests slower than a bucket bound) more than
    rho0 = 1 + margin times the stable's?"  The building block is the per-window conditional binomial test of
    llmops.canary.stats.worse_than: given x events in a window in which the canary served n_c and the stable n_s
    requests, the canary's share of the events is y ~ Binomial(x, pi(rho)), pi(rho) = rho n_c / (rho n_c + n_s),
    whatever the (shared, possibly bursty) level of the rate in that window. The window's log-likelihood
    l_w(rho) = y log pi(rho) + (x - y) log(1 - pi(rho)) is added up over all windows, at every weight.
      reject (roll back)  a mixture SPRT: E = sum_k w_k exp(l(rho_k) - l(rho0)) over alternatives rho_k > rho0
                          (half the weight on rho_bad, half spread over rho0 x GRID). The family has monotone
                          likelihood ratio, so every term is a supermartingale for any true rho <= rho0.
                          Rejects when E >= 1/alpha_test.
      accept              the mirror test of H_bad: rho >= rho_bad = 1 + detect: A = exp(l(1) - l(rho_bad)),
                          a supermartingale for any rho >= rho_bad, so a canary that is rho_bad times worse is
                          accepted with probability <= beta. Accepts when A >= 1/beta.
    Between the two (rho0 < rho < rho_bad) the test may take long: that is the indifference zone.
    With no events on either side there is nothing to compare (a ratio of two zeros): ``evaluable`` is False.
``AbsoluteTest``  "is the canary's rate above ``limit``?" (errors vs max-error-rate, share above a latency bound
    vs 1 - q): a mixture SPRT of Binomial(n, p_k) against Binomial(n, limit) on the pooled counts (their sums are
    sufficient), p_k = limit x GRID. Rejects only; the absolute limit never needs acceptance.

The false-rollback budget ``alpha`` of the canary is split evenly over the enabled rejection tests (Bonferroni),
so the whole canary's false-rollback rate is <= alpha. States are plain dicts (JSON, kept on the canary object).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GRID = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)  # alternatives, as multiples of the null's rate (ratio)


def _logsumexp_weighted(logs: list[float], weights: list[float]) -> float:
    top = max(logs)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(w * math.exp(v - top) for v, w in zip(logs, weights, strict=True)))


def _check(y: int, x: int, who: str) -> None:
    if y < 0 or x < 0 or y > x:
        raise ValueError(f"{who}: need 0 <= canary events <= all events, got {y} of {x}")


@dataclass(frozen=True)
class RelativeRule:
    margin: float  # H0: canary rate <= (1 + margin) x stable's
    detect: float  # accept once shown < (1 + detect) x stable's
    alpha: float   # this test's share of the false-rollback budget
    beta: float    # chance of accepting a canary (1 + detect) x worse

    def __post_init__(self):
        if not 0 <= self.margin < self.detect:
            raise ValueError(f"need 0 <= margin < detect, got margin {self.margin} detect {self.detect}")

    @property
    def rhos(self) -> tuple[float, ...]:
        """Grid of ratios: [1, rho0, rho_bad, rho0 x GRID...]."""
        rho0 = 1.0 + self.margin
        return (1.0, rho0, 1.0 + self.detect, *(rho0 * g for g in GRID))


class RelativeTest:
    """Pooled conditional-binomial e-processes for one ratio check. ``state`` is a JSON-ready dict."""

    def __init__(self, rule: RelativeRule, state: dict | None = None):
        self.rule = rule
        self.rhos = rule.rhos
        fresh = {"canary_requests": 0, "stable_requests": 0, "canary_events": 0, "stable_events": 0,
                 "informative_windows": 0, "loglik": [0.0] * len(self.rhos)}
        self.state = state if state and len(state.get("loglik", ())) == len(self.rhos) else fresh

    def add(self, canary_events: int, canary_requests: int, stable_events: int, stable_requests: int) -> None:
        y, n_c, ys, n_s = canary_events, canary_requests, stable_events, stable_requests
        _check(y, n_c, "canary")
        _check(ys, n_s, "stable")
        s = self.state
        s["canary_requests"] += n_c
        s["stable_requests"] += n_s
        s["canary_events"] += y
        s["stable_events"] += ys
        x = y + ys
        if x == 0 or n_c == 0 or n_s == 0:  # no events, or one side idle (e.g. 100 %): no information
            return
        s["informative_windows"] += 1
        ll = s["loglik"]
        for i, rho in enumerate(self.rhos):
            pi = rho * n_c / (rho * n_c + n_s)
            ll[i] += y * math.log(pi) + (x - y) * math.log1p(-pi)

    @property
    def evaluable(self) -> bool:
        return self.state["informative_windows"] > 0

    def log_reject(self) -> float:
        ll = self.state["loglik"]
        alts = ll[2:]
        weights = [0.5] + [0.5 / len(GRID)] * len(GRID)
        return _logsumexp_weighted(alts, weights) - ll[1]

    def log_accept(self) -> float:
        ll = self.state["loglik"]
        return ll[0] - ll[2]

    @property
    def reject_at(self) -> float:
        return math.log(1.0 / self.rule.alpha)

    @property
    def accept_at(self) -> float:
        return math.log(1.0 / self.rule.beta)

    def rejected(self) -> bool:
        return self.log_reject() >= self.reject_at

    def accepted(self) -> bool:
        return self.log_accept() >= self.accept_at

    def ratio(self) -> float | None:
        """Pooled rate ratio canary / stable (for the record; the tests use the per-window likelihoods)."""
        s = self.state
        if not s["canary_requests"] or not s["stable_requests"] or not s["stable_events"]:
            return None
        return (s["canary_events"] / s["canary_requests"]) / (s["stable_events"] / s["stable_requests"])

    def requests_to_accept(self, weight: float) -> int | None:
        """About how many more canary requests at ``weight`` % an equal canary needs before acceptance (None: it
        cannot be gained at this weight, e.g. at 100 % where the stable serves nothing)."""
        missing = self.accept_at - self.log_accept()
        if missing <= 0:
            return 0
        if not 0 < weight < 100:
            return None
        s = self.state
        n = s["canary_requests"] + s["stable_requests"]
        rate = (s["canary_events"] + s["stable_events"] + 0.5) / (n + 1)  # events per request, both sides
        r = (100.0 - weight) / weight  # stable requests per canary request
        pi1, rb = 1.0 / (1.0 + r), 1.0 + self.rule.detect
        pib = rb / (rb + r)
        kl = pi1 * math.log(pi1 / pib) + (1 - pi1) * math.log((1 - pi1) / (1 - pib))
        gain = rate * (1 + r) * kl  # expected log-evidence per canary request
        return math.ceil(missing / gain) if gain > 0 else None

    def summary(self) -> dict:
        s = self.state
        return {"canary_requests": s["canary_requests"], "stable_requests": s["stable_requests"],
                "canary_events": s["canary_events"], "stable_events": s["stable_events"],
                "ratio": self.ratio(), "margin": self.rule.margin, "detect": self.rule.detect,
                "log_reject": round(self.log_reject(), 4), "reject_at": round(self.reject_at, 4),
                "log_accept": round(self.log_accept(), 4), "accept_at": round(self.accept_at, 4),
                "evaluable": self.evaluable}


class AbsoluteTest:
    """Pooled mixture SPRT of the canary's rate against an absolute limit (rejects only)."""

    def __init__(self, limit: float, alpha: float, state: dict | None = None):
        if not 0 <= limit < 1:
            raise ValueError(f"limit must be in [0, 1), got {limit}")
        self.limit, self.alpha = limit, alpha
        self.alts = [limit * g for g in GRID if limit * g < 1]
        self.state = state if state and "events" in state else {"requests": 0, "events": 0}

    def add(self, events: int, requests: int) -> None:
        _check(events, requests, "canary")
        self.state["requests"] += requests
        self.state["events"] += events

    def log_reject(self) -> float:
        y, n, p0 = self.state["events"], self.state["requests"], self.limit
        if p0 == 0:
            return math.inf if y else 0.0
        if not self.alts:
            return 0.0
        logs = [y * math.log(p / p0) + (n - y) * (math.log1p(-p) - math.log1p(-p0)) for p in self.alts]
        return _logsumexp_weighted(logs, [1.0 / len(logs)] * len(logs))

    @property
    def reject_at(self) -> float:
        return math.log(1.0 / self.alpha)

    def rejected(self) -> bool:
        return self.log_reject() >= self.reject_at

    def summary(self) -> dict:
        n, y = self.state["requests"], self.state["events"]
        return {"requests": n, "events": y, "rate": y / n if n else None, "limit": self.limit,
                "log_reject": round(min(self.log_reject(), 1e9), 4), "reject_at": round(self.reject_at, 4)}
