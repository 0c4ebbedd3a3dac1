"""The traffic-provider interface every router implements (after flagger's pkg/router), and the shared target.

A router moves a share of traffic (0..100 %) to the canary and back:

``reconcile()``      make sure the routing objects exist and have the shape we need (create the canary Ingress,
                     check the VirtualService / HTTPRoute has stable and canary destinations); returns nothing.
``set_routes(w)``    send ``w`` % of requests to the canary and the rest to stable.
``get_routes()``     the canary's current share as the traffic object says it (0 when there is no canary route).
``finalize()``       undo what reconcile/set_routes changed: all traffic to stable, created objects deleted,
                     replicas restored. Idempotent; called on promote, rollback, cancel and crash.
``describe()``       which objects it touches, for the record.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from llmops.canary.kube import Kube
from llmops.errors import UsageError


@dataclass(frozen=True)
class Target:
    """What a canary is made of: two Deployments (and their Services) in one namespace, plus a traffic object."""

    namespace: str
    stable: str
    canary: str
    stable_service: str = ""
    canary_service: str = ""
    route: str = ""  # the Ingress / VirtualService / HTTPRoute that carries the weights

    @property
    def stable_svc(self) -> str:
        return self.stable_service or self.stable

    @property
    def canary_svc(self) -> str:
        return self.canary_service or self.canary


class Router(ABC):
    name = ""
    needs_route = True

    def __init__(self, kube: Kube, target: Target):
        if self.needs_route and not target.route:
            raise UsageError(f"provider {self.name} needs route: the name of the {self.route_kind} that carries "
                             "the traffic weights", f"pass --route <{self.route_kind} name>")
        self.kube = kube
        self.target = target

    route_kind = ""

    @abstractmethod
    def reconcile(self) -> None: ...

    @abstractmethod
    def set_routes(self, weight: int) -> None: ...

    @abstractmethod
    def get_routes(self) -> int: ...

    @abstractmethod
    def finalize(self) -> None: ...

    def describe(self) -> dict:
        t = self.target
        return {"provider": self.name, "namespace": t.namespace, "route": t.route, "route_kind": self.route_kind,
                "stable_service": t.stable_svc, "canary_service": t.canary_svc}


def check_weight(weight: int) -> int:
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
        raise ValueError(f"a canary weight is a whole percentage 0..100, got {weight!r}")
    return weight
