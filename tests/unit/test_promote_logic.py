"""Pure logic of llmops.k8s: kubectl's rollout verdicts and revision choice, the patch a promotion sends, the lock
record, retries/backoff and error mapping, the verdict reader, the health check against a local server."""
from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from llmops.errors import CheckFailed, InfraError, InputError, UsageError
from llmops.k8s.change import ChangeSpec, apply_to_template, build_patch, current_version, pick_container
from llmops.k8s.client import Conflict, NotFound, retrying
from llmops.k8s.health import HealthFailed, HealthSpec, wait_healthy
from llmops.k8s.lock import lease_state, read_journal
from llmops.k8s.rollout import pick_revision, rollout_status
from llmops.k8s.verdict import read_verdict, require_pass


def dep(gen=2, observed=2, want=3, updated=3, replicas=3, available=3, reason="NewReplicaSetAvailable"):
    return {"metadata": {"name": "llm", "generation": gen},
            "spec": {"replicas": want},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": replicas,
                       "availableReplicas": available,
                       "conditions": [{"type": "Progressing", "reason": reason, "message": "m"}]}}


@pytest.mark.parametrize("kw, done, failed, text", [
    ({}, True, False, "successfully rolled out"),
    ({"gen": 3}, False, False, "spec update to be observed"),
    ({"reason": "ProgressDeadlineExceeded"}, False, True, "exceeded its progress deadline"),
    ({"updated": 1}, False, False, "1 out of 3 new replicas have been updated"),
    ({"replicas": 4}, False, False, "1 old replicas are pending termination"),
    ({"available": 2}, False, False, "2 of 3 updated replicas are available"),
    ({"gen": 3, "reason": "ProgressDeadlineExceeded"}, False, False, "observed"),  # stale condition: not yet judged
])
def test_rollout_status_matches_kubectl(kw, done, failed, text):
    status = rollout_status(dep(**kw))
    assert (status.done, status.failed) == (done, failed) and text in status.message


def rs(rev):
    return {"metadata": {"annotations": {"deployment.kubernetes.io/revision": str(rev)}}}


def test_pick_revision_is_kubectls_previous_or_named():
    sets = [rs(3), rs(1), rs(5), rs(4)]
    assert pick_revision(sets) is sets[3]  # second newest
    assert pick_revision(sets, 1) is sets[1]
    assert pick_revision(sets, 2) is None and pick_revision([rs(1)]) is None


def template(*names, env=None):
    return {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": n, "image": f"img/{n}:1", "env": env or []} for n in names]}}


def test_container_choice_lists_what_exists():
    assert pick_container(template("only"), None, "d")[1]["name"] == "only"
    with pytest.raises(UsageError, match=r"2 containers \(model, proxy\)"):
        pick_container(template("model", "proxy"), None, "d")
    with pytest.raises(UsageError, match="no container 'x'; its containers: model, proxy"):
        pick_container(template("model", "proxy"), "x", "d")


def test_patch_sets_image_env_and_a_complete_record():
    d = {"metadata": {"resourceVersion": "77", "annotations": {"llmops-actions/git-sha": "old"}},
         "spec": {"template": template("model", "proxy", env=[{"name": "MODEL_VERSION", "valueFrom": {"x": 1}}])}}
    spec = ChangeSpec(image="img/model:2", model_version="v2", container="model", git_sha="abc")
    patch = build_patch(d, spec, "d")
    assert patch["metadata"]["resourceVersion"] == "77"
    c = patch["spec"]["template"]["spec"]["containers"][0]
    assert c == {"name": "model", "image": "img/model:2",
                 "env": [{"name": "MODEL_VERSION", "value": "v2", "valueFrom": None}]}
    ann = patch["metadata"]["annotations"]
    assert ann["llmops.dev/git-sha"] == "abc" and ann["llmops.dev/model-uri"] is None  # stale keys removed
    assert ann["llmops-actions/git-sha"] is None, "the record under the old prefix is removed"
    assert ann["kubernetes.io/change-cause"].startswith("llmops kubectl-promote model-version=v2 image=img/model:2")
    after = apply_to_template(d["spec"]["template"], spec, "d")
    assert after["spec"]["containers"][0]["env"] == [{"name": "MODEL_VERSION", "value": "v2"}]
    assert current_version({"spec": {"template": after}}, "model") == "v2"


def test_version_via_annotation_touches_the_pod_template_only():
    d = {"metadata": {"resourceVersion": "1"}, "spec": {"template": template("m")}}
    patch = build_patch(d, ChangeSpec(model_version="v9", version_via="annotation"), "d")
    assert patch["spec"]["template"]["metadata"]["annotations"] == {"llmops.dev/model-version": "v9"}
    assert "env" not in patch["spec"]["template"]["spec"]["containers"][0]
    with pytest.raises(UsageError, match="nothing to promote"):
        ChangeSpec().validate()


def test_legacy_annotation_keys_are_still_read():
    legacy = {"spec": {"template": {"metadata": {"annotations": {"llmops-actions/model-version": "v3"}},
                                    "spec": {"containers": [{"name": "m", "image": "img:1"}]}}}}
    assert current_version(legacy, None) == "v3"


def test_lease_expiry_and_journal_are_read_defensively():
    lease = {"spec": {"holderIdentity": "run-1", "leaseDurationSeconds": 30,
                      "renewTime": "2026-01-01T00:00:00.000000Z"}, "metadata": {"annotations": {
                          "llmops.dev/promotion": '{"state": "promoting", "from_hash": "abc"}'}}}
    holder, expires = lease_state(lease)
    assert holder == "run-1" and expires == 1767225630.0
    assert read_journal(lease)["from_hash"] == "abc"
    lease["metadata"]["annotations"]["llmops.dev/promotion"] = "{broken"
    assert read_journal(lease) is None and read_journal(None) is None
    assert lease_state({"spec": {}}) == ("", 0.0)


def api_exc(status, message="m"):
    exc = ApiException(status=status, reason="r")
    exc.body = json.dumps({"message": message})
    return exc


def test_retrying_backs_off_on_409_and_5xx_then_succeeds():
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise api_exc(409 if len(calls) == 1 else 503)
        return "ok"

    assert retrying(fn, what="w", sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2 and all(0 < s <= 5 for s in sleeps)


def test_retrying_keeps_going_for_its_whole_budget_with_capped_backoff():
    now, sleeps = [0.0], []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    def fn():
        raise ConnectionRefusedError("refused")

    with pytest.raises(InfraError, match=r"tried for \d+s"):
        retrying(fn, what="read x", budget=60, sleep=sleep, clock=lambda: now[0])
    assert 55 <= now[0] <= 60 and max(sleeps) <= 5 and len(sleeps) >= 12, "backs off, capped, for ~the budget"


@pytest.mark.parametrize("status, kind, text", [(404, NotFound, "not found"), (403, UsageError, "deploy/rbac.yaml"),
                                                (422, InputError, "refused"), (409, Conflict, "409"),
                                                (500, InfraError, "500")])
def test_retrying_maps_what_is_left(status, kind, text):
    with pytest.raises(kind) as err:
        retrying(lambda: (_ for _ in ()).throw(api_exc(status)), what="read x", budget=0.01, sleep=lambda s: None)
    assert text in str(err.value)


def test_connection_errors_become_infra_errors():
    import urllib3

    def fn():
        raise urllib3.exceptions.MaxRetryError(None, "https://10.0.0.1", "refused")

    with pytest.raises(InfraError, match="cannot reach the Kubernetes API server"):
        retrying(fn, what="read x", budget=0.01, sleep=lambda s: None)


@pytest.mark.parametrize("content, error", [
    (None, "cannot read the verdict"), ("{", "not valid JSON"), ("[1]", "must be a JSON object"),
    ('{"result": 1}', "result=1"), ('{"result": "maybe"}', "result='maybe'"), ('{"status": "pass"}', "result=None"),
])
def test_verdict_is_read_defensively(tmp_path, content, error):
    path = tmp_path / "v.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=error):
        read_verdict(str(path))


def test_verdict_gate(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"result": " PASS "}')
    assert require_pass(str(path), force=False).result == "pass"
    path.write_text('{"result": "inconclusive", "reason": "too few samples"}')
    with pytest.raises(CheckFailed, match="says inconclusive: too few samples"):
        require_pass(str(path), force=False)
    assert require_pass(str(path), force=True).result == "inconclusive"
    path.write_text('{"result": "inconclusive", "on_inconclusive": "pass"}')  # the gate's own policy said go
    assert require_pass(str(path), force=False).result == "inconclusive"
    with pytest.raises(UsageError, match="no evaluation verdict"):
        require_pass(None, force=False)
    assert require_pass(None, force=True) is None


def test_a_verdict_for_another_model_version_or_uri_is_refused(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"result": "pass", "model": {"version": "v7", "uri": "s3://m/v7"}}')
    with pytest.raises(UsageError, match="is for model version v7, not v8"):
        require_pass(str(path), force=False, model_version="v8")
    with pytest.raises(UsageError, match="is for model URI s3://m/v7, not s3://m/v8"):
        require_pass(str(path), force=False, model_version="v7", model_uri="s3://m/v8")
    assert require_pass(str(path), force=False, model_version="v7", model_uri="s3://m/v7").model_version == "v7"
    assert require_pass(str(path), force=True, model_version="v8").result == "pass"
    path.write_text('{"result": "pass", "model": {"info": {"model_version": "v5"}}}')  # the training record
    with pytest.raises(UsageError, match="version v5, not v6"):
        require_pass(str(path), force=False, model_version="v6")


@pytest.fixture
def flaky_server(get_server):
    state = {"fail_first": 2, "gets": 0}

    def answer(_path: str) -> tuple[int, bytes]:
        state["gets"] += 1
        return (503 if state["gets"] <= state["fail_first"] else 200), b"ok"

    return get_server(answer), state


def test_health_check_retries_until_healthy_and_names_the_failure(flaky_server):
    url, state = flaky_server
    report = wait_healthy(HealthSpec(url + "/health", budget=20, interval=0.05))
    assert report.ok and report.attempts == 3
    state.update(fail_first=10**6, gets=0)
    with pytest.raises(HealthFailed, match=r"answered 503") as err:
        wait_healthy(HealthSpec(url + "/health", budget=0.3, interval=0.05))
    assert err.value.reached and err.value.exit_code == 1


def test_health_check_on_nothing_listening_is_unreached():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(HealthFailed) as err:
        wait_healthy(HealthSpec(f"http://127.0.0.1:{port}/health", budget=0.2, interval=0.05))
    assert not err.value.reached and "ConnectionError" in err.value.message
    with pytest.raises(UsageError, match="http"):
        HealthSpec("llm-server/health")
