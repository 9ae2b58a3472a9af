"""Layer `registry` (phase registry): the lab registry on the registry host (docs/course.md §3).

TLS from the lab CA with the right names, anonymous access refused, the generated
password accepted, and a real round trip: an image made with `docker import` on the
registry host is pushed over TLS with auth, pulled on every worker through containerd
(`ctr` with the hosts directory), and is still there after the registry restarts.

The password is read from the lab's state directory on the controller (or, on a worker,
from containerd's own config) and never put in a command line testinfra logs or in a
failure message.

The checks that only read (the service, its config and storage, docker's login, each node's
TLS trust) read the node's snapshot (`snap`, `snapshots[node]`, _snapshot.py), whose commands
`snapshot_reads` lists; the round trip (push, pull, restart) and the journal run live on `host`.
"""

from __future__ import annotations

import base64
import http.client
import json
import shlex
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import yaml
from _check import check, expect, output
from _lab import facts, group_vars, node_host
from _snapshot import file_reads, service_reads

testinfra_hosts = ["ansible://registry"]
pytestmark = pytest.mark.xdist_group("registry")  # the round trip is ordered: push, pull, restart


GV = group_vars()
REGISTRY = facts().registry
NAME = REGISTRY.name
IP = REGISTRY.ip
PORT = int(REGISTRY.port)
ADDRESS = REGISTRY.address
AUTH = bool(REGISTRY.auth)
USER = REGISTRY.user
SERVICE = "docker-registry"
RESTART_WAIT = 30  # seconds the registry gets to answer again after a restart
WORKERS = [n["name"] for n in GV.get("lab_nodes", []) if n["role"] == "worker"]
K8S_NODES = [n["name"] for n in GV.get("lab_nodes", []) if n["role"] in ("control-plane", "worker")]
# One image per run, so a pull can only succeed if this run's push did.
TAG = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
IMAGE = f"{ADDRESS}/labctl/verify:{TAG}"


def _state() -> Path:
    return Path(GV["lab_state_dir"])


def _password() -> str:
    return (_state() / "secrets" / "registry-password").read_text().strip()


def _context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(_state() / "ca.crt"))


def _get(path: str, auth: tuple[str, str] | None = None, accept: str = "") -> tuple[int, dict[str, str]]:
    """GET https://<registry ip>:<port><path> from the controller, verified against the lab CA (IP SAN)."""
    conn = http.client.HTTPSConnection(IP, PORT, context=_context(), timeout=10)
    headers = {"Accept": accept} if accept else {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def _curl_v2() -> str:
    return f"curl -sS -o /dev/null -w '%{{http_code}}' https://{ADDRESS}/v2/"


def snapshot_reads(node: dict) -> list[str]:
    """The commands the read-only checks below run, per node (read once, _snapshot.py)."""
    if node["role"] == "registry":
        return [*service_reads(SERVICE), *file_reads("/etc/docker/registry/config.yml"),
                *file_reads("/var/lib/docker-registry", "exists", "is_directory", "user"),
                *file_reads("/root/.docker/config.json", "exists", "content")]
    return [_curl_v2()] if node["name"] in K8S_NODES else []


def _journal(host) -> str:
    return host.run(f"journalctl -u {SERVICE} -n 25 --no-pager -o cat").stdout


def test_service_running(host, snap):
    svc = snap.service(SERVICE)
    check(svc.is_running and svc.is_enabled, f"{SERVICE} runs and starts at boot", expected="active, enabled",
          found=lambda: host.run(f"systemctl is-active {SERVICE}; systemctl is-enabled {SERVICE}").stdout.split(),
          detail=lambda: _journal(host))


def test_storage_on_disk(snap):
    cfg = yaml.safe_load(snap.file("/etc/docker/registry/config.yml").content_string)
    root = cfg.get("storage", {}).get("filesystem", {}).get("rootdirectory")
    expect(root, "/var/lib/docker-registry", "images are stored on disk in /var/lib/docker-registry")
    d = snap.file(root)
    check(d.is_directory and d.user == "docker-registry", f"{root} is a directory the registry owns",
          expected="directory owned by docker-registry", found=f"{'directory' if d.is_directory else 'missing'}"
          f"{', owner ' + d.user if d.exists else ''}")


@pytest.mark.parametrize("server_name", sorted({NAME, NAME.split(".")[0], IP}) if NAME else [])
def test_tls_certificate(server_name):
    """The certificate verifies against the lab CA for the name, the short name and the IP."""
    try:
        with socket.create_connection((IP, PORT), timeout=10) as sock, \
                _context().wrap_socket(sock, server_hostname=server_name) as tls:
            cert = tls.getpeercert()
    except (ssl.SSLError, OSError) as err:
        check(False, f"TLS to {IP}:{PORT} verifies as {server_name} with the lab CA", expected="a verified handshake",
              found=str(err))
        return
    sans = sorted(v for _, v in cert.get("subjectAltName", ()))
    check(server_name in sans, f"the certificate names {server_name}", expected=server_name, found=sans)


def test_anonymous_refused():
    status, headers = _get("/v2/")
    expect(status, 401 if AUTH else 200, "GET /v2/ without credentials" + (" is refused" if AUTH else " answers"),
           detail=json.dumps(headers, indent=1))
    if AUTH:
        check("basic" in headers.get("www-authenticate", "").lower(), "the registry asks for basic auth",
              expected="WWW-Authenticate: Basic ...", found=headers.get("www-authenticate", "none"))


def test_login_accepted():
    if not AUTH:
        pytest.skip("registry.auth is false in lab.yml: there is no login")
    status, _ = _get("/v2/", auth=(USER, _password()))
    expect(status, 200, f"GET /v2/ as {USER} with the generated password")


def test_wrong_password_refused():
    if not AUTH:
        pytest.skip("registry.auth is false in lab.yml: there is no login")
    status, _ = _get("/v2/", auth=(USER, "not-" + uuid.uuid4().hex))
    expect(status, 401, f"GET /v2/ as {USER} with a wrong password is refused")


@pytest.mark.parametrize("node", K8S_NODES)
def test_node_trusts_registry(node, snapshots):
    """Every Kubernetes node reaches the registry by name over TLS with only its system trust store."""
    out = snapshots[node].run(_curl_v2())
    expect(out.stdout.strip(), "401" if AUTH else "200", f"curl https://{ADDRESS}/v2/ from {node} (system CA store)",
           node=node, detail=output(out))


def test_docker_logged_in(snap):
    if not AUTH:
        pytest.skip("registry.auth is false in lab.yml: no login")
    f = snap.file("/root/.docker/config.json")
    auths = json.loads(f.content_string).get("auths", {}) if f.exists else {}
    check(ADDRESS in auths, f"docker on the registry host is logged in to {ADDRESS}", expected=ADDRESS,
          found=sorted(auths))


@pytest.fixture(scope="module")
def pushed(host):
    """Build a one-file image with `docker import` on the registry host and push it over TLS with auth."""
    script = (
        "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
        f"echo 'labctl verify {TAG}' > \"$d/hello.txt\"; tar -C \"$d\" -cf \"$d/rootfs.tar\" hello.txt; "
        f"docker import \"$d/rootfs.tar\" {IMAGE}; docker push {IMAGE}; docker image rm {IMAGE} >/dev/null"
    )
    return host.run(f"sh -c {shlex.quote(script)}")


def test_push(pushed, host):
    expect(pushed.rc, 0, f"docker push {IMAGE} over TLS with auth", detail=lambda: output(pushed) + "\n" + _journal(host))


def _pull_command() -> str:
    # The way the kubelet pulls: through containerd (hosts.toml, the lab CA) with the credentials of the
    # kubelet's config.json on the node (0600; config.toml holds none). They are read into a variable on
    # the node: never in this command line, testinfra's log or a failure message. crictl comes with the
    # Kubernetes packages (phase packages); before that, ctr pulls the same way (--hosts-dir).
    crictl = "crictl pull"
    ctr = "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d"
    if AUTH:
        read = ("python3 -c 'import base64, json, sys; a = json.load(open(sys.argv[1]))[\"auths\"][sys.argv[2]][\"auth\"]; "
                "print(a if sys.argv[3] == \"b64\" else base64.b64decode(a).decode())' "
                f"/var/lib/kubelet/config.json {ADDRESS}")
        crictl = f'auth=$({read} b64) && CRICTL_AUTH="$auth" crictl pull'
        ctr = f'creds=$({read} plain) && {ctr} --user "$creds"'
    script = f"if command -v crictl >/dev/null; then {crictl} {IMAGE}; else {ctr} {IMAGE} >/dev/null; fi"
    return "sh -c " + shlex.quote(script)


@pytest.mark.parametrize("node", WORKERS)
def test_pull_on_worker(pushed, node):
    if pushed.rc != 0:
        pytest.fail(f"nothing to pull: the push failed (see test_push)\n{output(pushed)}")
    worker = node_host(node)
    out = worker.run(_pull_command())
    expect(out.rc, 0, f"{node} pulls {IMAGE} through the CRI (hosts dir, lab CA, the kubelet's credentials)",
           node=node, detail=output(out))
    worker.run(f"crictl rmi {IMAGE}")


def test_image_survives_restart(pushed, host):
    if pushed.rc != 0:
        pytest.fail(f"nothing to look for: the push failed (see test_push)\n{output(pushed)}")
    restart = host.run(f"systemctl restart {SERVICE}")
    expect(restart.rc, 0, f"systemctl restart {SERVICE}", detail=lambda: output(restart) + "\n" + _journal(host))
    auth = (USER, _password()) if AUTH else None
    status = 0
    deadline = time.monotonic() + RESTART_WAIT
    while True:  # bounded by RESTART_WAIT; polled often, the registry is usually back within a second
        try:
            status, _ = _get("/v2/", auth=auth)
        except OSError:
            status = 0
        if status == 200 or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    expect(status, 200, f"{SERVICE} answers again after the restart", detail=lambda: _journal(host))
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    status, _ = _get(f"/v2/labctl/verify/manifests/{TAG}", auth=auth, accept=accept)
    expect(status, 200, f"{IMAGE} is still in the registry after the restart", detail=lambda: _journal(host))
