"""The RBAC rules kubectl-promote needs, in one place, and the check that they are granted before anything is written.

deploy/rbac.yaml grants exactly ``RULES`` (a test keeps them equal and runs promotions with a token bound to that
Role); a 403 names them in its hint. ``check_access`` asks the API server whether the caller may use each verb a
mode needs, so a Role without ``watch`` is refused with exit 2 naming the missing verbs before the Deployment is
touched, not half-way through a rollout. One SelfSubjectRulesReview answers for the whole namespace; a verb it
cannot settle (an incomplete review, rules limited to resource names) is asked with a SelfSubjectAccessReview.
Every authenticated user may create both.
"""
from __future__ import annotations

from llmops.errors import UsageError

# (apiGroup, resource) -> verbs, each one used by llmops.k8s (see deploy/rbac.yaml for what for)
RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "deployments"): ("get", "list", "watch", "patch"),
    ("apps", "replicasets"): ("list",),
    ("", "services"): ("get", "list", "patch"),
    ("coordination.k8s.io", "leases"): ("get", "create", "update", "delete"),
}
LEASES = ("coordination.k8s.io", "leases", ("get", "create", "update", "delete"))
# What each mode uses: (group, resource, verbs)
NEEDS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "rolling": (("apps", "deployments", ("get", "watch", "patch")), ("apps", "replicasets", ("list",)), LEASES),
    "blue-green": (("apps", "deployments", ("get", "watch", "patch")), ("apps", "replicasets", ("list",)),
                   ("", "services", ("get", "patch")), LEASES),
}


def describe() -> str:
    return "; ".join(f"{res}{'.' + grp if grp else ''}: {', '.join(verbs)}" for (grp, res), verbs in RULES.items())


def _rules(kube) -> list[dict] | None:
    """The caller's rules in its namespace, or None when the server cannot list them completely."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": kube.namespace}}
    status = kube.call(kube.authorization.create_self_subject_rules_review, body,
                       what="list the credentials' permissions").get("status") or {}
    return None if status.get("incomplete") else list(status.get("resourceRules") or [])


def covers(rule: dict, group: str, resource: str, verb: str) -> bool:
    return all(want in (rule.get(key) or []) or "*" in (rule.get(key) or [])
               for key, want in (("verbs", verb), ("apiGroups", group), ("resources", resource)))


def missing_verbs(kube, needs: tuple[tuple[str, str, tuple[str, ...]], ...]) -> list[str]:
    """``verb resource.group`` for each verb the caller may not use in its namespace."""
    rules = _rules(kube)
    missing = []
    for group, resource, verbs in needs:
        for verb in verbs:
            if rules is not None:
                matching = [r for r in rules if covers(r, group, resource, verb)]
                if any(not r.get("resourceNames") for r in matching):
                    continue
                if not matching:
                    missing.append(f"{verb} {resource}{'.' + group if group else ''}")
                    continue
            body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": kube.namespace, "group": group,
                                                    "resource": resource, "verb": verb}}}
            review = kube.call(kube.authorization.create_self_subject_access_review, body,
                               what=f"check access to {verb} {resource}")
            if not (review.get("status") or {}).get("allowed"):
                missing.append(f"{verb} {resource}{'.' + group if group else ''}")
    return missing


def check_access(kube, mode: str) -> str:
    """Raise UsageError (exit 2) naming every missing verb; returns a note for the summary."""
    try:
        missing = missing_verbs(kube, NEEDS[mode])
    except UsageError as exc:  # the review itself is forbidden (unusual): the 403s will name what is missing
        return f"could not check permissions ({exc.message.split(':')[0]}); continuing"
    if missing:
        raise UsageError(f"the credentials may not {', '.join(missing)} in namespace {kube.namespace}; nothing was "
                         "changed", f"bind the CI service account to the Role in deploy/rbac.yaml ({describe()})")
    return f"the credentials may use every verb a {mode} promotion needs"
