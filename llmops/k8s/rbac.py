"""The RBAC rules kubectl-promote needs, in one place: deploy/rbac.yaml grants exactly these (a test keeps them
equal and runs promotions with a token bound to that Role), and a 403 names them in its hint."""
from __future__ import annotations

# (apiGroup, resource) -> verbs, each one used by llmops.k8s (see deploy/rbac.yaml for what for)
RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "deployments"): ("get", "list", "watch", "patch"),
    ("apps", "replicasets"): ("list",),
    ("", "services"): ("get", "list", "patch"),
}


def describe() -> str:
    return "; ".join(f"{res}{'.' + grp if grp else ''}: {', '.join(verbs)}" for (grp, res), verbs in RULES.items())
