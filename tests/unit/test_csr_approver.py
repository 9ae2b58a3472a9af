"""The in-cluster kubelet serving CSR approver (kubelet_csr.py --serve, roles/csr_approver).

The decision is the one tested in test_csr.py; here: one pass and the loop over real CSRs (made by
`cryptography`), the approval object against the Kubernetes schema, the HTTPS client against a local
TLS server with its own CA (what the pod's service-account CA and token do), the rendered manifest
(strict kubernetes-validate, the pod's security settings, the script and node list it carries), and
when a lab gets the approver's image. The live check is tests/infra/test_control_plane.py.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labctl.model import images
from labctl.model.config import load_lab, parse_lab
from labctl.provisioning import csr
from labctl.provisioning.inventory import group_vars_document
from labctl.provisioning.manifests import load_documents, validate_documents
from labctl.provisioning.render import render_all
from labctl.state import StateDir

from .conftest import base_lab
from .test_csr import NODES, make_csr, make_pem

NOW = "2026-01-01T00:00:00Z"


# -- one pass and the loop, over real CSRs ------------------------------------------------------------
class Cluster:
    """CSRs as the API server keeps them: a PUT to /approval is refused (409) when the object changed
    since it was read (resourceVersion), as the real API does; every call is recorded."""

    def __init__(self, items: list[dict]):
        self.items = {}
        for i, item in enumerate(items):
            item["metadata"]["resourceVersion"] = str(i + 1)
            self.items[item["metadata"]["name"]] = item
        self.puts: list[str] = []
        self.list_errors: list[csr.ApiError] = []

    def list_csrs(self) -> dict:
        if self.list_errors:
            raise self.list_errors.pop(0)
        return json.loads(json.dumps({"items": list(self.items.values())}))

    def update_approval(self, obj: dict) -> dict:
        name = obj["metadata"]["name"]
        cur = self.items.get(name)
        if cur is None:
            raise csr.ApiError(404, f"{name} not found")
        if cur["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise csr.ApiError(409, f"{name}: the object has been modified")
        self.puts.append(name)
        cur["status"] = obj["status"]
        cur["metadata"]["resourceVersion"] = str(int(cur["metadata"]["resourceVersion"]) + 1)
        return cur

    def decision(self, name: str) -> tuple[str, str]:
        c = self.items[name]["status"]["conditions"][-1]
        return c["type"], c["reason"]


def _mixed() -> list[dict]:
    return [
        make_csr("cp1", name="cp1-serving"),
        make_csr("w1", name="w1-serving", pem=make_pem("system:node:w1", dns=("w1",), ips=("10.30.0.11",))),
        make_csr("w1", name="w1-forged", pem=make_pem("system:node:w1", dns=("w1",), ips=("10.0.2.15",))),
        make_csr("intruder", name="intruder"),
        make_csr("cp1", name="client", signer="kubernetes.io/kube-apiserver-client-kubelet",
                 usages=("digital signature", "client auth")),
        make_csr("cp1", name="by-provision", conditions=[{"type": "Approved", "status": "True",
                                                          "reason": "KubectlApprove"}]),
    ]


def test_one_pass_approves_the_lab_nodes_and_denies_the_rest():
    cluster, lines = Cluster(_mixed()), []
    counts = csr.run_pass(cluster, NODES, lines.append)
    assert counts == {"approve": 2, "deny": 2, "skipped": 0}
    assert cluster.decision("cp1-serving") == ("Approved", "LabctlApproved")
    assert cluster.decision("w1-serving") == ("Approved", "LabctlApproved")
    assert cluster.decision("w1-forged") == ("Denied", "LabctlDenied")
    assert cluster.decision("intruder") == ("Denied", "LabctlDenied")
    # another signer's CSR and one `labctl provision` approved are left as they are
    assert "status" not in cluster.items["client"] or not cluster.items["client"]["status"].get("conditions")
    assert cluster.items["by-provision"]["status"]["conditions"] == [
        {"type": "Approved", "status": "True", "reason": "KubectlApprove"}]
    assert sorted(cluster.puts) == ["cp1-serving", "intruder", "w1-forged", "w1-serving"]
    # one line per decision, naming the CSR and why
    assert len(lines) == 4
    assert any(ln.startswith("deny w1-forged:") and "10.0.2.15" in ln for ln in lines)


def test_a_second_pass_changes_nothing():
    cluster = Cluster(_mixed())
    csr.run_pass(cluster, NODES, lambda _l: None)
    puts, lines = list(cluster.puts), []
    assert csr.run_pass(cluster, NODES, lines.append) == {"approve": 0, "deny": 0, "skipped": 0}
    assert cluster.puts == puts and lines == []


def test_a_csr_decided_meanwhile_by_provision_is_skipped_not_fought():
    """`kubectl certificate approve` (the join phase) wins the race: the pod's PUT gets 409, logs, moves on."""
    cluster = Cluster([make_csr("cp1", name="raced"), make_csr("w1", name="other",
                       pem=make_pem("system:node:w1", dns=("w1",), ips=("10.30.0.11",)))])
    listed = cluster.list_csrs()
    raced = cluster.items["raced"]
    raced["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]}
    raced["metadata"]["resourceVersion"] = "99"
    cluster.list_csrs = lambda: listed  # the pod's list was taken before provision approved
    lines: list[str] = []
    assert csr.run_pass(cluster, NODES, lines.append) == {"approve": 1, "deny": 0, "skipped": 1}
    assert cluster.decision("raced") == ("Approved", "KubectlApprove")
    assert any(ln.startswith("skip raced") for ln in lines)


def test_the_loop_backs_off_on_errors_and_resets_after_a_good_pass():
    cluster = Cluster([make_csr("cp1", name="late")])
    cluster.list_errors = [csr.ApiError(0, "connection refused"), csr.ApiError(503, "unavailable"),
                           csr.ApiError(0, "timed out")]
    sleeps: list[float] = []
    lines: list[str] = []
    assert csr.serve(cluster, NODES, interval=30, max_backoff=300, log=lines.append, sleep=sleeps.append,
                     passes=5) == 0
    assert sleeps == [5, 10, 20, 30]
    assert cluster.decision("late") == ("Approved", "LabctlApproved")
    assert sum("error (failure" in ln for ln in lines) == 3
    assert lines[0].startswith("labctl kubelet-serving approver: 2 node(s) cp1=10.30.0.10, w1=10.30.0.11")


def test_an_unexpected_api_error_on_a_put_ends_the_pass_and_is_retried():
    cluster = Cluster([make_csr("cp1", name="a")])

    def forbidden(_obj):
        raise csr.ApiError(403, "forbidden")

    real = cluster.update_approval
    cluster.update_approval = forbidden
    with pytest.raises(csr.ApiError):
        csr.run_pass(cluster, NODES, lambda _l: None)
    cluster.update_approval = real
    sleeps: list[float] = []
    csr.serve(cluster, NODES, log=lambda _l: None, sleep=sleeps.append, passes=1)
    assert cluster.decision("a")[0] == "Approved"


@pytest.mark.parametrize(("failures", "delay"), [(0, 30), (1, 5), (2, 10), (6, 160), (7, 300), (60, 300)])
def test_backoff_is_bounded(failures, delay):
    assert csr.backoff(failures, 30, 300) == delay


def test_the_approval_object_is_a_valid_certificate_signing_request():
    obj = csr.with_condition(make_csr("cp1", name="x"), "approve", "x: cp1 serving certificate", NOW)
    assert validate_documents([obj], "1.37") == []
    assert obj["status"]["conditions"] == [{"type": "Approved", "status": "True", "reason": "LabctlApproved",
                                            "message": "labctl kubelet-serving approver: x: cp1 serving certificate",
                                            "lastUpdateTime": NOW}]
    denied = csr.with_condition(make_csr("cp1", name="x"), "deny", "y" * 2000, NOW)
    assert validate_documents([denied], "1.37") == []
    assert len(denied["status"]["conditions"][0]["message"]) <= 1024


@pytest.mark.parametrize("bad", ["[]", "{}", '[{"ip": "10.0.0.1"}]', '[{"name": "a", "ip": "not-an-ip"}]'])
def test_the_node_list_is_checked(bad):
    with pytest.raises(ValueError):
        csr.read_nodes(bad)


def test_serve_outside_a_pod_says_so():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    proc = subprocess.run([sys.executable, "-I", str(csr.IMPLEMENTATION), "--serve", "--nodes", json.dumps(NODES)],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "KUBERNETES_SERVICE_HOST is not set" in proc.stderr


# -- the HTTPS client: a local TLS server with its own CA, as the pod sees the API server --------------
def _ca_and_server_cert(tmp: Path) -> tuple[Path, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    skey = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(name).public_key(skey.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.key").write_bytes(skey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


@pytest.fixture()
def tls_server(tmp_path):
    ca, crt, key = _ca_and_server_cert(tmp_path)
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append({"method": "GET", "path": self.path, "auth": self.headers["Authorization"]})
            self._answer(200, {"kind": "CertificateSigningRequestList", "items": [make_csr("cp1", name="a")]})

        def do_PUT(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"method": "PUT", "path": self.path, "auth": self.headers["Authorization"], "body": body})
            self._answer(409, {"kind": "Status", "message": "the object has been modified"})

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    (tmp_path / "token").write_text("token-1\n")
    yield f"https://127.0.0.1:{srv.server_address[1]}", tmp_path, seen
    srv.shutdown()


def test_the_client_verifies_the_ca_sends_the_current_token_and_maps_errors(tls_server):
    server, sa_dir, seen = tls_server
    api = csr.Api(server, str(sa_dir), timeout=5)
    assert [i["metadata"]["name"] for i in api.list_csrs()["items"]] == ["a"]
    assert seen[0]["path"] == ("/apis/certificates.k8s.io/v1/certificatesigningrequests"
                               "?fieldSelector=spec.signerName%3Dkubernetes.io/kubelet-serving")
    assert seen[0]["auth"] == "Bearer token-1"
    (sa_dir / "token").write_text("token-2\n")  # the kubelet rotated the projected token
    obj = csr.with_condition(make_csr("cp1", name="a"), "approve", "ok", NOW)
    with pytest.raises(csr.ApiError) as exc:
        api.update_approval(obj)
    assert exc.value.code == 409 and "modified" in str(exc.value)
    assert seen[1]["path"] == "/apis/certificates.k8s.io/v1/certificatesigningrequests/a/approval"
    assert seen[1]["auth"] == "Bearer token-2" and seen[1]["body"] == obj


def test_the_client_refuses_a_server_outside_its_ca(tls_server, tmp_path_factory):
    server, sa_dir, _seen = tls_server
    other = tmp_path_factory.mktemp("other-ca")
    _ca_and_server_cert(other)
    (other / "token").write_text("t\n")
    with pytest.raises(csr.ApiError) as exc:
        csr.Api(server, str(other), timeout=5).list_csrs()
    assert exc.value.code == 0 and "CERTIFICATE_VERIFY_FAILED" in str(exc.value)


# -- which labs get the approver's image --------------------------------------------------------------
def _bundle(root: Path, with_approver: bool) -> Path:
    from labctl.bundle import manifest as bundle_manifest

    arts = []
    for name in bundle_manifest.ROLE_BINARIES:
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "bin" / name).write_bytes(b"x")
        arts.append({"path": f"bin/{name}", "kind": "binary", "name": name, "version": "v1"})
    if with_approver:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / "csr-approver.tar").write_bytes(b"x")
        arts.append({"path": "images/csr-approver.tar", "kind": "image", "name": "csr-approver",
                     "ref": images.CSR_APPROVER, "version": "bookworm-1"})
    (root / "manifest.json").write_text(json.dumps({"format": 1, "kubernetes": "v1.37.2", "artifacts": arts}))
    return root


def test_a_lab_without_a_bundle_has_no_approver_image_to_pull():
    lab = parse_lab(base_lab())
    assert "offline bundle" in images.csr_approver_unavailable(lab)
    assert images.CSR_APPROVER not in {i.source for i in images.lab_images(lab)}


def test_a_bundle_built_with_the_approver_brings_it_through_the_lab_registry(tmp_path):
    data = base_lab()
    data["kubernetes"]["bundle"] = str(_bundle(tmp_path / "b", with_approver=True))
    lab = parse_lab(data)
    assert images.csr_approver_unavailable(lab) == ""
    listed = {i.source: i.mirror for i in images.lab_images(lab)}
    assert listed[images.CSR_APPROVER] == images.csr_approver_image(lab) == "registry:5000/labctl/csr-approver:bookworm-1"


def test_an_older_bundle_without_the_approver_says_rebuild(tmp_path):
    data = base_lab()
    data["kubernetes"]["bundle"] = str(_bundle(tmp_path / "b", with_approver=False))
    assert "rebuild it" in images.csr_approver_unavailable(parse_lab(data))


# -- the rendered manifest ------------------------------------------------------------------------------
MANIFEST = "cluster/csr-approver.yaml"


@pytest.fixture(scope="module", params=["bundle", "online"])
def rendered(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"approver-{request.param}")
    data = base_lab()
    if request.param == "bundle":
        data["kubernetes"]["bundle"] = str(_bundle(d / "bundle", with_approver=True))
    lab_file = d / "lab.yml"
    lab_file.write_text(yaml.safe_dump(data, sort_keys=False))
    lab = load_lab(lab_file)
    render_all(lab, lab_file, d / "rendered", roles=["csr_approver"])
    gv = group_vars_document(lab, StateDir(lab_file, lab.name))
    return lab, gv, d / "rendered"


def _kind(docs: list, kind: str) -> dict:
    return next(x for x in docs if x["kind"] == kind)


def test_the_manifest_validates_strictly(rendered):
    lab, _gv, out = rendered
    docs = load_documents(out / MANIFEST)
    assert [x["kind"] for x in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment"]
    assert validate_documents(docs, lab.kubernetes.minor) == []
    assert {x["metadata"].get("namespace") for x in docs if x["kind"] != "ClusterRole" and x["kind"] != "ClusterRoleBinding"} \
        == {"kube-system"}


def test_the_rbac_is_exactly_what_the_approver_does(rendered):
    docs = load_documents(rendered[2] / MANIFEST)
    assert _kind(docs, "ClusterRole")["rules"] == [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
        {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
         "resourceNames": ["kubernetes.io/kubelet-serving"], "verbs": ["approve"]},
    ]
    binding = _kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "labctl-csr-approver", "namespace": "kube-system"}]


def test_the_pod_runs_the_one_decision_script_for_the_lab_nodes(rendered):
    lab, gv, out = rendered
    docs = load_documents(out / MANIFEST)
    cm = _kind(docs, "ConfigMap")
    assert cm["data"]["kubelet_csr.py"] == csr.IMPLEMENTATION.read_text()
    assert json.loads(cm["data"]["nodes.json"]) == [{"name": n.name, "ip": str(n.ip)} for n in lab.nodes
                                                     if n.role != "registry"]
    pod = _kind(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"][:5] == ["python3", "/opt/labctl/kubelet_csr.py", "--serve", "--nodes-file", "/opt/labctl/nodes.json"]
    assert c["image"] == gv["lab_csr_approver_image"]
    assert c["volumeMounts"] == [{"name": "approver", "mountPath": "/opt/labctl", "readOnly": True}]
    assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    # the arguments the script accepts
    argv = c["command"][2:]
    proc = subprocess.run([sys.executable, "-I", str(csr.IMPLEMENTATION), *argv, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0


def test_the_pod_is_locked_down_and_stays_on_a_control_plane(rendered):
    docs = load_documents(rendered[2] / MANIFEST)
    dep = _kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "labctl-csr-approver"
    assert pod["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    req = pod["containers"][0]["resources"]["requests"]
    assert req == {"cpu": "10m", "memory": "32Mi"}


def test_the_header_says_when_the_lab_cannot_run_it(rendered):
    _lab, gv, out = rendered
    text = (out / MANIFEST).read_text()
    assert ("Not applied to this lab" in text) == bool(gv["lab_csr_approver_unavailable"])
