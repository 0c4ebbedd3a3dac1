"""Shared logic of the two custom-object routers (Istio VirtualService, Gateway API HTTPRoute).

Both hold a list of rules, each with a list of weighted destinations. ``WeightedRoutes`` finds, in every rule that
routes to the stable Service, the stable and canary destinations, and writes the weights as a JSON patch (custom
objects take ``application/json-patch+json``; strategic merge is 415 on them). Every patch starts with ``test``
operations on the destination names it is about to re-weight, so a concurrent edit that reorders the rules makes
the API server reject the patch instead of silently moving someone else's traffic. A rule that routes to the stable
Service but has no canary destination gets one (a copy of the stable destination, renamed) with weight 0.
"""
from __future__ import annotations

import copy
from abc import abstractmethod

from llmops.canary.routers.base import Router, check_weight
from llmops.errors import UsageError


class WeightedRoutes(Router):
    group = ""
    version = ""
    plural = ""
    rules_key = ""  # spec.<rules_key>[i]
    dests_key = ""  # rule.<dests_key>[j]

    @abstractmethod
    def dest_name(self, dest: dict) -> str:
        """The Service a destination sends to."""

    @abstractmethod
    def renamed(self, dest: dict, service: str) -> dict:
        """A copy of a destination sending to another Service."""

    def matches(self, dest: dict, service: str) -> bool:
        return self.dest_name(dest) == service

    # ------------------------------------------------------------ pure logic
    def locate(self, obj: dict) -> list[tuple[int, int, int | None]]:
        """(rule index, stable index, canary index or None) for every rule that routes to the stable Service."""
        found = []
        for i, rule in enumerate((obj.get("spec") or {}).get(self.rules_key) or []):
            dests = rule.get(self.dests_key) or []
            stable = [j for j, d in enumerate(dests) if self.matches(d, self.target.stable_svc)]
            canary = [j for j, d in enumerate(dests) if self.matches(d, self.target.canary_svc)]
            if not stable:
                continue
            others = len(dests) - len(stable) - len(canary)
            if len(stable) > 1 or len(canary) > 1 or others:
                raise UsageError(f"{self.route_kind} {self.target.route} rule {i} routes to more than the stable "
                                 f"and canary Services", "give canary-step a rule with exactly the stable "
                                 f"({self.target.stable_svc}) and optionally the canary ({self.target.canary_svc}) "
                                 "destination")
            found.append((i, stable[0], canary[0] if canary else None))
        if not found:
            raise UsageError(f"{self.route_kind} {self.target.route} has no rule routing to the stable Service "
                             f"{self.target.stable_svc}", "pass stable-service: the Service name its rules use")
        return found

    def patch_ops(self, obj: dict, weight: int) -> list[dict]:
        """The JSON patch that gives the canary ``weight`` % in every stable rule."""
        check_weight(weight)
        ops: list[dict] = []
        rules = obj["spec"][self.rules_key]
        for i, js, jc in self.locate(obj):
            base = f"/spec/{self.rules_key}/{i}/{self.dests_key}"
            ops.append({"op": "test", "path": f"{base}/{js}", "value": rules[i][self.dests_key][js]})
            ops.append({"op": "add", "path": f"{base}/{js}/weight", "value": 100 - weight})
            if jc is None:
                dest = self.renamed(rules[i][self.dests_key][js], self.target.canary_svc)
                dest["weight"] = weight
                ops.append({"op": "add", "path": f"{base}/-", "value": dest})
            else:
                ops.append({"op": "test", "path": f"{base}/{jc}", "value": rules[i][self.dests_key][jc]})
                ops.append({"op": "add", "path": f"{base}/{jc}/weight", "value": weight})
        return ops

    def canary_weight(self, obj: dict) -> int:
        """The canary's share (percent) in the first stable rule; 0 when it has no canary destination."""
        i, js, jc = self.locate(obj)[0]
        if jc is None:
            return 0
        dests = obj["spec"][self.rules_key][i][self.dests_key]
        ws, wc = self.weight_of(dests[js]), self.weight_of(dests[jc])
        return round(100 * wc / (ws + wc)) if ws + wc else 0

    def weight_of(self, dest: dict) -> int:
        return int(dest.get("weight", 0) or 0)

    # ------------------------------------------------------------- API calls
    def read(self) -> dict:
        t = self.target
        return self.kube.call(self.kube.custom().get_namespaced_custom_object, self.group, self.version, t.namespace,
                              self.plural, t.route, what=f"read {self.route_kind} {t.namespace}/{t.route}")

    def set_routes(self, weight: int) -> None:
        t = self.target
        ops = self.patch_ops(self.read(), weight)
        self.kube.call(self.kube.custom().patch_namespaced_custom_object, self.group, self.version, t.namespace,
                       self.plural, t.route, ops, _content_type="application/json-patch+json",
                       what=f"set weights on {self.route_kind} {t.namespace}/{t.route}")

    def reconcile(self) -> None:
        obj = self.read()
        if any(jc is None for _, _, jc in self.locate(obj)):
            self.set_routes(0)  # add the canary destinations at weight 0

    def get_routes(self) -> int:
        return self.canary_weight(self.read())

    def finalize(self) -> None:
        self.set_routes(0)


def renamed_copy(dest: dict, path: tuple[str, ...], service: str) -> dict:
    out = copy.deepcopy(dest)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = service
    return out
