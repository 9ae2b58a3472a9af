"""The discovery CA hash (labctl.provisioning.k8s_pki against openssl, and the role's own pipeline) and the join role's
bootstrap token TTL check."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from labctl.provisioning import k8s_pki

REPO = Path(__file__).resolve().parents[2]
JOIN_TASKS = REPO / "roles" / "kubeadm_join" / "tasks" / "main.yml"


def _ca(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module", params=["rsa", "ecdsa"])
def ca_file(request, tmp_path_factory) -> Path:
    key = rsa.generate_private_key(65537, 2048) if request.param == "rsa" else ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp(request.param) / "ca.crt"
    path.write_bytes(_ca(key))
    return path


def _sh(cmd: str) -> str:
    return subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, text=True).stdout.strip()


def test_ca_hash_equals_openssl(ca_file: Path):
    digest = _sh(f"openssl x509 -pubkey -noout -in {ca_file} | openssl pkey -pubin -outform der "
                 "| openssl dgst -sha256 -hex | sed 's/^.*= *//'")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert k8s_pki.ca_cert_hash(ca_file.read_bytes()) == f"sha256:{digest}"


def test_ca_hash_equals_the_course_pipeline_for_rsa(tmp_path: Path):
    """The lab reference's pipeline (`openssl rsa -pubin`, RSA keys only, as kubeadm makes by default)."""
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(_ca(rsa.generate_private_key(65537, 2048)))
    digest = _sh(f"openssl x509 -pubkey -in {ca_file} | openssl rsa -pubin -outform der 2>/dev/null "
                 "| openssl dgst -sha256 -hex | sed 's/^.*= *//'")
    assert k8s_pki.ca_cert_hash(ca_file.read_text()) == f"sha256:{digest}"


def _role_task(name: str) -> dict:
    tasks = yaml.safe_load(JOIN_TASKS.read_text())

    def walk(items):
        for t in items:
            if t.get("name") == name:
                return t
            for key in ("block", "rescue", "always"):
                found = walk(t.get(key, []))
                if found:
                    return found
        return None

    task = walk(tasks)
    assert task, f"no task {name!r} in {JOIN_TASKS}"
    return task


def test_the_roles_openssl_pipeline_gives_labctls_hash(ca_file: Path):
    """The shell command the join role runs on the control plane, executed here on a generated CA."""
    cmd = _role_task("Hash the cluster CA public key with openssl")["ansible.builtin.shell"]["cmd"]
    cmd = cmd.replace("{{ kubeadm_join_ca_cert | quote }}", str(ca_file))
    assert "{{" not in cmd
    assert "sha256:" + _sh(cmd) == k8s_pki.ca_cert_hash(ca_file.read_bytes())


def test_python_hash_cli_used_by_the_role(ca_file: Path):
    out = subprocess.run([sys.executable, "-m", "labctl.provisioning.k8s_pki", "ca-cert-hash", str(ca_file)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == k8s_pki.ca_cert_hash(ca_file.read_bytes())


def test_cli_usage_error():
    r = subprocess.run([sys.executable, "-m", "labctl.provisioning.k8s_pki"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


TTLS = [("1h", 3600), ("60m", 3600), ("30m", 1800), ("1m", 60)]
BAD_TTLS = ["0", "0s", "2h", "61m", "24h0m0s", "1d", "", "h"]


def _role_ttl_regex() -> str:
    that = _role_task("Refuse a bootstrap token that lives longer than an hour (or forever)")["ansible.builtin.assert"]["that"]
    return re.search(r"match\('(.+)'\)", that).group(1)


@pytest.mark.parametrize("ttl,ok", [(t, True) for t, _ in TTLS] + [(t, False) for t in BAD_TTLS])
def test_the_roles_ttl_check_takes_1m_to_1h_and_never_0(ttl: str, ok: bool):
    """The join role's assert (Jinja `match`, anchored at the start): tokens of 1m to 1h, never 0 (never expires)."""
    assert bool(re.match(_role_ttl_regex(), ttl)) is ok


def test_role_default_ttl_is_one_hour():
    defaults = yaml.safe_load((REPO / "roles" / "kubeadm_join" / "defaults" / "main.yml").read_text())
    assert defaults["kubeadm_join_token_ttl"] in [t for t, seconds in TTLS if seconds == 3600]
