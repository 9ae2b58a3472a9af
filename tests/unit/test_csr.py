"""The kubelet serving CSR decision, with real CSRs made by `cryptography`."""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labctl.provisioning import csr

NODES = [{"name": "cp1", "ip": "10.30.0.10"}, {"name": "w1", "ip": "10.30.0.11"}]
KEY = ec.generate_private_key(ec.SECP256R1())


def make_pem(cn: str, org: str = "system:nodes", dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
             emails: tuple[str, ...] = ()) -> str:
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ]))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def make_csr(node: str = "cp1", *, username: str | None = None, signer: str = csr.SIGNER,
             groups: tuple[str, ...] = ("system:nodes", "system:authenticated"),
             usages: tuple[str, ...] = ("digital signature", "server auth"),
             pem: str | None = None, name: str = "csr-abc", conditions: list | None = None) -> dict:
    user = username or f"system:node:{node}"
    ip = {n["name"]: n["ip"] for n in NODES}.get(node, "10.99.0.1")
    pem = pem or make_pem(user, dns=(node,), ips=(ip,))
    obj = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "signerName": signer,
            "username": user,
            "groups": list(groups),
            "usages": list(usages),
            "request": base64.b64encode(pem.encode()).decode(),
        },
        "status": {},
    }
    if conditions:
        obj["status"]["conditions"] = conditions
    return obj


def test_parse_request_reads_subject_and_sans():
    pem = make_pem("system:node:cp1", dns=("cp1",), ips=("10.30.0.10",))
    got = csr.parse_request(pem)
    assert got == {"cn": ["system:node:cp1"], "o": ["system:nodes"], "dns": ["cp1"], "ips": ["10.30.0.10"], "other_sans": 0}


def test_approves_a_matching_kubelet_serving_csr():
    action, reason = csr.decide(make_csr("cp1"), NODES)
    assert action == "approve", reason


def test_approves_a_worker_with_only_its_ip():
    pem = make_pem("system:node:w1", ips=("10.30.0.11",))
    assert csr.decide(make_csr("w1", pem=pem), NODES)[0] == "approve"


def test_denies_a_foreign_node_name():
    action, reason = csr.decide(make_csr("intruder"), NODES)
    assert action == "deny"
    assert "not a node of this lab" in reason


def test_denies_a_foreign_ip_san():
    pem = make_pem("system:node:cp1", dns=("cp1",), ips=("10.30.0.10", "10.0.2.15"))
    action, reason = csr.decide(make_csr("cp1", pem=pem), NODES)
    assert action == "deny"
    assert "10.0.2.15" in reason


def test_denies_another_nodes_ip():
    pem = make_pem("system:node:cp1", dns=("cp1",), ips=("10.30.0.11",))
    assert csr.decide(make_csr("cp1", pem=pem), NODES)[0] == "deny"


def test_denies_a_foreign_dns_san():
    pem = make_pem("system:node:cp1", dns=("cp1", "kubernetes.default"), ips=("10.30.0.10",))
    action, reason = csr.decide(make_csr("cp1", pem=pem), NODES)
    assert (action, "kubernetes.default" in reason) == ("deny", True)


def test_denies_email_sans():
    pem = make_pem("system:node:cp1", dns=("cp1",), emails=("a@example.org",))
    assert csr.decide(make_csr("cp1", pem=pem), NODES)[0] == "deny"


def test_denies_subject_not_matching_requester():
    pem = make_pem("system:node:w1", dns=("cp1",), ips=("10.30.0.10",))
    assert csr.decide(make_csr("cp1", pem=pem), NODES)[0] == "deny"


def test_denies_without_group_system_nodes():
    assert csr.decide(make_csr("cp1", groups=("system:authenticated",)), NODES)[0] == "deny"


def test_denies_a_user_that_is_not_a_node():
    assert csr.decide(make_csr("cp1", username="kubernetes-admin"), NODES)[0] == "deny"


def test_denies_client_usages_on_the_serving_signer():
    assert csr.decide(make_csr("cp1", usages=("digital signature", "client auth")), NODES)[0] == "deny"


def test_denies_an_unreadable_request():
    obj = make_csr("cp1")
    junk = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"
    obj["spec"]["request"] = base64.b64encode(junk).decode()
    action, reason = csr.decide(obj, NODES)
    assert action == "deny" and "cannot be read" in reason


def test_ignores_a_client_signer_csr():
    obj = make_csr("cp1", signer="kubernetes.io/kube-apiserver-client-kubelet", usages=("digital signature", "client auth"))
    action, reason = csr.decide(obj, NODES)
    assert action == "ignore"
    assert "not ours" in reason


def test_ignores_an_already_approved_csr():
    obj = make_csr("cp1", conditions=[{"type": "Approved", "status": "True"}])
    assert csr.decide(obj, NODES)[0] == "ignore"


def test_decide_all_reports_nodes_without_a_serving_csr():
    out = csr.decide_all({"items": [make_csr("cp1", name="a"), make_csr("intruder", name="b")]}, NODES)
    assert [(d["name"], d["action"]) for d in out["decisions"]] == [("a", "approve"), ("b", "deny")]
    assert out["missing"] == ["w1"]


def test_the_script_the_role_ships_runs_with_the_stdlib_only():
    """The file on the node is the same implementation: run it as the role does."""
    items = {"items": [make_csr("cp1", name="ok"), make_csr("w1", name="bad", pem=make_pem("system:node:w1", ips=("1.2.3.4",)))]}
    proc = subprocess.run([sys.executable, "-I", str(csr.IMPLEMENTATION), "--nodes", json.dumps(NODES)],
                          input=json.dumps(items), capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    assert {d["name"]: d["action"] for d in out["decisions"]} == {"ok": "approve", "bad": "deny"}


def test_the_implementation_imports_only_the_stdlib():
    import ast

    tree = ast.parse(csr.IMPLEMENTATION.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


@pytest.mark.parametrize("bad", ["", "not pem", "-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----"])
def test_parse_request_rejects_garbage(bad):
    with pytest.raises(csr.CsrError):
        csr.parse_request(bad)
