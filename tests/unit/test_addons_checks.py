"""The addon checks' decisions, on sample JSON written from the APIs' documented formats."""

from __future__ import annotations

from labctl.verify import addon_checks as ac


def pod(name, phase="Running", ready="True", waiting=None, ns="monitoring"):
    p = {"metadata": {"name": name, "namespace": ns},
         "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}}
    if waiting:
        p["status"]["containerStatuses"] = [{"name": "c", "state": {"waiting": {"reason": waiting}}}]
    return p


def test_pods_not_ready_names_the_waiting_reason():
    pods = {"kind": "PodList", "items": [
        pod("grafana-1"),
        pod("prometheus-0", phase="Pending", ready="False", waiting="ImagePullBackOff"),
        pod("admission-patch-x", phase="Succeeded", ready="False"),
    ]}
    assert ac.pods_not_ready(pods) == ["monitoring/prometheus-0: Pending (ImagePullBackOff)"]


def test_pods_not_ready_is_empty_when_all_ready():
    assert ac.pods_not_ready({"items": [pod("a"), pod("b")]}) == []


def test_nodes_without_metrics():
    nm = {"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": [
        {"metadata": {"name": "master"}, "timestamp": "2026-11-22T02:00:00Z", "window": "20s",
         "usage": {"cpu": "151m", "memory": "1211Mi"}},
        {"metadata": {"name": "node"}, "usage": {}},
    ]}
    assert ac.nodes_without_metrics(nm, ["master", "node", "node2"]) == ["node", "node2"]
    assert ac.nodes_without_metrics(nm, ["master"]) == []


def test_targets_down_reports_job_instance_and_error():
    targets = {"status": "success", "data": {"activeTargets": [
        {"labels": {"job": "apiserver", "instance": "192.168.56.21:6443"}, "health": "up", "lastError": ""},
        {"labels": {"job": "kube-etcd", "instance": "192.168.56.21:2381"}, "health": "down",
         "lastError": "Get \"http://192.168.56.21:2381/metrics\": dial tcp 192.168.56.21:2381: connect: connection refused"},
        {"labels": {"job": "kube-proxy", "instance": "192.168.56.31:10249"}, "health": "unknown", "lastError": ""},
    ], "droppedTargets": []}}
    down = ac.targets_down(targets)
    assert len(down) == 2
    assert down[0].startswith("kube-etcd 192.168.56.21:2381: down (Get")
    assert down[1] == "kube-proxy 192.168.56.31:10249: unknown (no error reported)"


def test_targets_api_error_is_reported():
    assert ac.targets_down({"status": "error", "errorType": "bad_data", "error": "x"}) == [
        "the targets API answered status 'error': x"]


def test_token_review():
    ok = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
          "status": {"authenticated": True, "user": {"username": "system:serviceaccount:headlamp:labctl-viewer",
                                                      "groups": ["system:serviceaccounts"]}}}
    assert ac.token_review_user(ok) == "system:serviceaccount:headlamp:labctl-viewer"
    assert ac.token_review_user({"status": {"authenticated": False, "error": "invalid bearer token"}}) is None
    assert ac.token_review_user({"status": {}}) is None


def test_grafana_answers():
    assert ac.grafana_healthy({"commit": "abc", "database": "ok", "version": "12.2.1"})
    assert not ac.grafana_healthy({"database": "failing"})
    assert ac.grafana_login_is_admin({"id": 1, "login": "admin", "isGrafanaAdmin": True})
    assert not ac.grafana_login_is_admin({"login": "viewer", "isGrafanaAdmin": False})


def test_whoami_pod():
    body = "Hostname: whoami-6d9c7b9f5-x2k8q\nIP: 127.0.0.1\nIP: 10.244.1.5\nRemoteAddr: 10.244.0.3:51234\nGET / HTTP/1.1\n"
    assert ac.whoami_pod(body) == "whoami-6d9c7b9f5-x2k8q"
    assert ac.whoami_pod("404 page not found\n") is None
