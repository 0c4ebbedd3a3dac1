"""Benchmark kubectl-promote's rollout waiting and API cost against kubectl, on the test control plane, in one run.

    python benchmarks/promote.py            # 10 promotions
    python benchmarks/promote.py --quick    # 3 promotions

Each round changes a 3-replica Deployment whose new pods turn Ready after ``--ready-delay`` seconds, then measures,
for the same change:
  reference   the first moment any observer saw the rollout complete (kubectl's criteria): a second watch opened
              before the change (watch-ref) or a GET every 20 ms (poll-20ms);
  ours        llmops.k8s.rollout.wait_for_rollout (a watch): when it notices completion;
  kubectl     ``kubectl rollout status`` started right after the change: when the process exits;
  poll-2s     a sleep loop reading the Deployment every 2 s (what ``while ...; sleep 2`` scripts do).
Prints the notice latency after the reference (median / max), and the API requests of one whole promotion (lock,
change, wait, unlock) against ``kubectl set image`` + ``kubectl rollout status`` (counted from kubectl -v=6, discovery cache warm).
Needs the control-plane binaries (bash tests/infra/build_control_plane.sh).
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmops.k8s.change import ChangeSpec  # noqa: E402
from llmops.k8s.client import connect  # noqa: E402
from llmops.k8s.primitives import write_change  # noqa: E402
from llmops.k8s.promote import Options, Outcome, promote  # noqa: E402
from llmops.k8s.rollout import read_deployment, rollout_status, wait_for_rollout  # noqa: E402


def _complete(obj: dict, generation: int) -> bool:
    return obj["metadata"].get("generation", 0) >= generation and rollout_status(obj).done


def _poller(kube, name: str, generation: int, interval: float, stop: threading.Event, seen: dict, key: str) -> None:
    stop.wait(random.Random(key + str(generation)).uniform(0, interval))  # a sleep loop starts at any phase
    while not stop.is_set():
        if _complete(read_deployment(kube, name), generation):
            seen[key] = time.perf_counter()
            return
        stop.wait(interval)


def _watcher(kube, name: str, generation: int, rv: str, stop: threading.Event, seen: dict) -> None:
    from llmops.k8s.rollout import watch_events

    while not stop.is_set():
        for _kind, obj in watch_events(kube, name, rv, 60):
            rv = obj["metadata"]["resourceVersion"]
            if _complete(obj, generation):
                seen["watch-ref"] = time.perf_counter()
                return


def one_round(cluster, kube, ref_kube, name: str, image: str) -> dict:
    seen: dict[str, float] = {}
    stop = threading.Event()
    dep = read_deployment(ref_kube, name)
    gen = dep["metadata"]["generation"] + 1
    watcher = threading.Thread(target=_watcher, args=(ref_kube, name, gen, dep["metadata"]["resourceVersion"], stop,
                                                      seen))
    watcher.start()
    write_change(kube, name, ChangeSpec(image=image))
    t0 = time.perf_counter()
    kubectl = subprocess.Popen([cluster_kubectl(cluster), f"--kubeconfig={cluster.kubeconfig}", "-n", kube.namespace,
                                "rollout", "status", f"deployment/{name}", "--timeout=120s"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads = [watcher, threading.Thread(target=_poller, args=(ref_kube, name, gen, 0.02, stop, seen, "poll-20ms")),
               threading.Thread(target=_poller, args=(ref_kube, name, gen, 2.0, stop, seen, "poll-2s"))]
    for t in threads[1:]:
        t.start()
    wait_for_rollout(kube, name, timeout=120)
    seen["ours"] = time.perf_counter()
    kubectl.wait(120)
    seen["kubectl"] = time.perf_counter()
    for t in threads:
        t.join(130)
    stop.set()
    seen["start"] = t0
    seen["reference"] = min(seen["watch-ref"], seen["poll-20ms"])
    return seen


def cluster_kubectl(cluster) -> str:
    from tests.infra import tools
    return tools.kubectl_path()


def kubectl_requests(cluster, ns: str, name: str, image: str) -> int:
    import tempfile

    cache = tempfile.mkdtemp(prefix="kubectl-cache-")
    base = [cluster_kubectl(cluster), f"--kubeconfig={cluster.kubeconfig}", f"--cache-dir={cache}", "-n", ns, "-v=6"]
    subprocess.run(base + ["get", "deployment", name], capture_output=True, timeout=60, check=True)  # warm discovery
    count = 0
    for args in (["set", "image", f"deployment/{name}", f"llm-model={image}"],
                 ["rollout", "status", f"deployment/{name}", "--timeout=120s"]):
        proc = subprocess.run(base + args, capture_output=True, text=True, timeout=150, check=True)
        count += len(re.findall(r'"Response" verb="|\b(?:GET|PATCH|PUT|POST|DELETE) https?://', proc.stderr))
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--ready-delay", type=float, default=1.0, help="seconds before a new pod turns Ready")
    args = p.parse_args(argv)
    rounds = 3 if args.quick else args.rounds

    from kubernetes import client as k8s

    from tests.infra.cluster import Cluster
    from tests.integration.promote_helpers import deployment

    with Cluster() as cluster:
        ns = cluster.namespace("bench")
        k8s.AppsV1Api(cluster.api_client).create_namespaced_deployment(
            ns, deployment("llm", "reg/llm:v0", replicas=3))
        cluster.kubelet.set_behavior("reg/llm:", "ready", ready_delay=args.ready_delay)
        kube = connect(kubeconfig=cluster.kubeconfig, namespace=ns)
        ref_kube = connect(kubeconfig=cluster.kubeconfig, namespace=ns)
        wait_for_rollout(kube, "llm", timeout=120)
        results = [one_round(cluster, kube, ref_kube, "llm", f"reg/llm:v{i + 1}") for i in range(rounds)]

        before = kube.calls
        promote(kube, Options("llm", ChangeSpec(image="reg/llm:calls", model_version="calls"), log=lambda m: None),
                Outcome())
        ours_calls = kube.calls - before
        theirs_calls = kubectl_requests(cluster, ns, "llm", "reg/llm:kubectl")
        kube.close()
        ref_kube.close()

    print(f"kubectl-promote benchmark: {rounds} rollouts of 3 replicas, pods Ready {args.ready_delay:g}s after start")
    print(f"{'waiter':<10} {'median ms':>10} {'max ms':>10}   (time from the rollout becoming complete to noticing)")
    medians = {}
    for key in ("ours", "kubectl", "poll-2s", "watch-ref", "poll-20ms"):
        lat = [(r[key] - r["reference"]) * 1000 for r in results if key in r and "reference" in r]
        medians[key] = statistics.median(lat)
        print(f"{key:<10} {medians[key]:>10.1f} {max(lat):>10.1f}")
    rollout_s = statistics.median(r["reference"] - r["start"] for r in results)
    print(f"(median rollout duration {rollout_s:.2f}s; reference = the first of a second watch and a GET every 20 ms)")
    print(f"ratio: kubectl rollout status notices {medians['kubectl'] - medians['ours']:+.1f} ms later than ours "
          f"(process start/exit included); a 2 s sleep loop {medians['poll-2s'] - medians['ours']:+.1f} ms later")
    print(f"API requests per promotion: ours {ours_calls} (access check, lease lock and journal, change, watch, unlock) vs kubectl set image + "
          f"rollout status {theirs_calls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
