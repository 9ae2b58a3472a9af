"""Addons of a real lab: pods ready, Ingress through the NodePort, metrics API, web UI login,
Grafana login, Prometheus targets.

Run by `labctl verify` against the lab's VMs or machines (needs the addons phase). kubectl
runs on the first control-plane node with admin.conf; HTTP checks go from the controller to
the nodes' NodePorts, as a user's browser would (the Grafana password never leaves the
controller). The decisions live in labctl/verify/addon_checks.py, unit-tested in
tests/unit/test_addons_checks.py.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _check import check, expect, output
from _lab import node_host

from labctl.verify import addon_checks

testinfra_hosts = ["ansible://control_plane"]

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
ADDON_DIR = "/etc/labctl/addons"  # roles' *_config_dir
VIEWER = "labctl-viewer"  # roles/dashboard dashboard_viewer_account


@pytest.fixture(scope="module")
def cp(lab_nodes):
    """The first control-plane node, where kubectl runs with admin.conf."""
    return node_host(next(n["name"] for n in lab_nodes if n["role"] == "control-plane"))


@pytest.fixture(scope="module")
def addons(lab_vars) -> dict:
    return lab_vars["lab_addons"]


@pytest.fixture(scope="module")
def k8s_nodes(lab_nodes) -> list[dict]:
    return [n for n in lab_nodes if n["role"] != "registry"]


def _kubectl_json(cp, args: str) -> tuple[dict, str]:
    out = cp.run(f"{KUBECTL} {args} -o json")
    return (json.loads(out.stdout) if out.rc == 0 and out.stdout.strip() else {}), output(out)


def _http(url: str, *, host_header: str | None = None, auth: tuple[str, str] | None = None,
          timeout: float = 10) -> tuple[int, str]:
    """(status, body) of a GET from the controller; self-signed https is accepted (the lab's NodePorts)."""
    req = urllib.request.Request(url)
    if host_header:
        req.add_header("Host", host_header)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310 - lab URLs
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


# addon kind -> (lab_addons key, namespaces its pods run in per choice)
NAMESPACES = {
    "metrics-server": ("metrics_server", {True: "kube-system"}),
    "ingress": ("ingress", {"traefik": "traefik", "ingress-nginx": "ingress-nginx"}),
    "dashboard": ("dashboard", {"headlamp": "headlamp", "kubernetes-dashboard": "kubernetes-dashboard"}),
    "monitoring": ("monitoring", {"kube-prometheus-stack": "monitoring"}),
}


@pytest.mark.parametrize("kind", list(NAMESPACES))
def test_addon_pods_ready(cp, addons, kind):
    key, namespaces = NAMESPACES[kind]
    choice = addons[key]
    if choice in ("none", False):
        pytest.skip(f"addons.{key} is {choice!r}: not installed")
    ns = namespaces[choice]
    selector = " -l app.kubernetes.io/name=metrics-server" if kind == "metrics-server" else ""
    pods, evidence = _kubectl_json(cp, f"get pods -n {ns}{selector}")
    check(pods.get("items"), f"{choice} has pods in namespace {ns}", expected="at least one pod", found="none",
          detail=evidence)
    expect(addon_checks.pods_not_ready(pods), [], f"every {choice} pod is Ready", detail=evidence)


def test_ingress_routes_host_names_through_the_nodeport(cp, addons, k8s_nodes):
    if addons["ingress"] == "none":
        pytest.skip("addons.ingress is 'none': no controller")
    apply = cp.run(f"{KUBECTL} apply -f {ADDON_DIR}/ingress-example.yaml")
    expect(apply.rc, 0, "the example Ingress (whoami) applies", detail=output(apply))
    rollout = cp.run(f"{KUBECTL} -n labctl-ingress-example rollout status deploy/whoami --timeout=180s")
    expect(rollout.rc, 0, "the whoami example becomes available", detail=output(rollout))
    ing, evidence = _kubectl_json(cp, "-n labctl-ingress-example get ingress whoami")
    hosts = [r["host"] for r in ing["spec"]["rules"]]
    port = addons["ingress_http_nodeport"]
    answers: dict[str, str] = {}
    for node in k8s_nodes:
        for name in hosts:
            body = ""
            for _ in range(20):  # the controller picks a new Ingress up within seconds
                status, body = _http(f"http://{node['ip']}:{port}/", host_header=name)
                if status == 200 and addon_checks.whoami_pod(body):
                    break
                time.sleep(3)
            answers[f"{node['name']} {name}"] = addon_checks.whoami_pod(body) or f"no whoami answer: {body[:120]}"
    bad = {k: v for k, v in answers.items() if not v.startswith("whoami-")}
    expect(bad, {}, f"every node's NodePort {port} routes {', '.join(hosts)} to the whoami pods", detail=evidence)


def test_metrics_api_reports_every_node(cp, addons, k8s_nodes):
    if not addons["metrics_server"]:
        pytest.skip("addons.metrics_server is false")
    out = cp.run(f"{KUBECTL} get --raw /apis/metrics.k8s.io/v1beta1/nodes")
    metrics = json.loads(out.stdout) if out.rc == 0 else {}
    missing = addon_checks.nodes_without_metrics(metrics, [n["name"] for n in k8s_nodes])
    expect(missing, [], "the metrics API (kubectl top node) reports cpu and memory for every node", detail=output(out))


def test_web_ui_answers_and_accepts_a_minted_token(cp, addons, k8s_nodes):
    ui = addons["dashboard"]
    if ui == "none":
        pytest.skip("addons.dashboard is 'none'")
    scheme = "http" if ui == "headlamp" else "https"
    url = f"{scheme}://{k8s_nodes[0]['ip']}:{addons['dashboard_nodeport']}/"
    status, body = _http(url)
    expect(status, 200, f"{ui} answers on its NodePort ({url})", detail=body[:500])
    token = cp.run(f"{KUBECTL} create token {VIEWER} -n {ui} --duration 10m")
    expect(token.rc, 0, f"a short-lived token for {VIEWER} is minted", detail=f"rc={token.rc} {token.stderr}")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token.stdout.strip()}}
    out = cp.run(f"echo {shlex.quote(json.dumps(review))} | {KUBECTL} create -f - -o json")
    user = addon_checks.token_review_user(json.loads(out.stdout)) if out.rc == 0 else None
    expect(user, f"system:serviceaccount:{ui}:{VIEWER}", "the API server accepts the minted token (TokenReview)",
           detail=f"rc={out.rc} {out.stderr}")


def test_grafana_answers_and_the_stored_password_logs_in(addons, lab_vars, k8s_nodes):
    if addons["monitoring"] == "none":
        pytest.skip("addons.monitoring is 'none'")
    base = f"http://{k8s_nodes[0]['ip']}:{addons['grafana_nodeport']}"
    status, body = _http(f"{base}/api/health")
    health = json.loads(body) if status == 200 else {}
    check(addon_checks.grafana_healthy(health), "Grafana answers /api/health with its database ok",
          expected='{"database": "ok"}', found=body[:200] or status)
    password = (Path(lab_vars["lab_state_dir"]) / "secrets" / "grafana-admin-password").read_text().strip()
    status, body = _http(f"{base}/api/user", auth=("admin", password))
    user = json.loads(body) if status == 200 else {}
    check(addon_checks.grafana_login_is_admin(user), "the generated admin password logs in to Grafana (/api/user)",
          expected="login admin, isGrafanaAdmin", found=f"HTTP {status}: {body[:200]}")


def test_every_prometheus_target_is_up(cp, addons):
    if addons["monitoring"] == "none":
        pytest.skip("addons.monitoring is 'none'")
    path = "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:http-web/proxy/api/v1/targets"
    down: list[str] = []
    out = None
    for _ in range(10):  # a target that just started needs one scrape interval
        out = cp.run(f"{KUBECTL} get --raw '{path}?state=active'")
        down = addon_checks.targets_down(json.loads(out.stdout)) if out.rc == 0 else ["(the targets API did not answer)"]
        if not down:
            break
        time.sleep(15)
    expect(down, [], "every Prometheus target is up (control-plane components, kubelets, node-exporters ...)",
           detail="\n".join(down) + "\n" + (out.stderr if out else ""))
