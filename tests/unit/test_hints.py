"""Known causes -> hints: each row is a failure as a check reports it and the hint a user must get."""

from __future__ import annotations

import pytest

from labctl.display.hints import hint_for, rule_for
from labctl.display.report import Check

CTX = {"lab_pod_subnet": "10.244.0.0/16", "lab_firewall": "ports", "lab_service_subnet": "10.254.0.0/16",
       "lab_registry": {"enabled": True, "name": "registry", "port": 5000, "address": "registry:5000"},
       "lab_nfs": {"enabled": True, "server": "registry"}}


def chk(layer="network", name="test_x", what="", expected="", found="", detail="", message="", longrepr=""):
    return Check(layer, f"t.py::{name}", name, "failed", what=what, expected=expected, found=found, detail=detail,
                 message=message, longrepr=longrepr)


@pytest.mark.parametrize("check, ctx, rule, words", [
    (chk(what="every node Ready", expected="Ready", found="node NotReady",
         detail="kube-flannel-ds-x 0/1 CrashLoopBackOff"), CTX, "flannel-pod-subnet", ["10.244.0.0/16", "net-conf.json"]),
    (chk(layer="addons", what="kubectl top node", found="Error from server (ServiceUnavailable): the server is "
         "currently unable to handle the request (get nodes.metrics.k8s.io)"), CTX, "metrics-503",
     ["kubectl get csr", "serverTLSBootstrap"]),
    (chk(layer="workloads", name="test_nodeport_answers_on_every_node", what="NodePort 30000 answers",
         found="unanswered: [Errno 111] Connection refused"), CTX, "nodeport-firewall", ["30000-32767", "8472/udp"]),
    (chk(layer="workloads", name="test_nodeport_answers_on_every_node", what="NodePort 30000 answers",
         found="unanswered: timed out"), {**CTX, "lab_firewall": "disabled"}, "nodeport-unanswered", ["kube-proxy"]),
    (chk(layer="registry", what="push to registry:5000", found="unauthorized: authentication required"), CTX,
     "registry-401", ["htpasswd", "registry-password"]),
    (chk(layer="runtime", what="pull through containerd",
         found="x509: certificate signed by unknown authority"), CTX, "x509-unknown-ca",
     ["trust store", "certs.d/registry:5000"]),
    (chk(layer="registry", what="docker-registry service is running", expected="active", found="inactive"), CTX,
     "registry-down", ["systemctl status docker-registry", "5000/tcp"]),
    (chk(layer="runtime", what="containerd SystemdCgroup", expected="true", found="false"), CTX, "systemd-cgroup",
     ["SystemdCgroup = true"]),
    (chk(layer="host", name="test_swap_off", what="swap is off", expected="", found="/dev/sda2 partition 1G"), CTX,
     "swap-on", ["swapoff -a", "fstab"]),
    (chk(layer="network", what="kube-proxy mode", expected="ipvs", found="iptables"), CTX, "ipvs-fallback", ["ip_vs"]),
    (chk(layer="workloads", what="whoami.ns.svc.cluster.local resolves through CoreDNS", expected="['10.254.3.4']",
         found="[]", detail="** server can't find whoami.ns.svc.cluster.local: NXDOMAIN"), CTX, "dns", ["10.254.0.0/16"]),
    (chk(layer="workloads", what="whoami Deployment ready", detail="whoami-1 0/1 ImagePullBackOff"), CTX,
     "image-pull", ["labctl images", "registry:5000"]),
    (chk(layer="host", message="RuntimeError: CommandResult(rc=255, stderr='ssh: connect to host 192.168.56.31 port 22: "
         "No route to host')"), CTX, "unreachable", ["labctl status"]),
])
def test_known_causes(check, ctx, rule, words):
    assert rule_for(check, ctx) == rule
    text = hint_for(check, ctx)
    for w in words:
        assert w in text


def test_unknown_failure_has_no_hint():
    assert hint_for(chk(what="the answer", expected="42", found="41"), CTX) == ""


def test_test_source_in_the_traceback_does_not_trigger_hints():
    """pytest's longrepr shows the test's code; only its `E` lines (the error) count."""
    longrepr = ("    def test_x(host):\n        # refuses anonymous access with 401 on the registry\n"
                ">       assert 1 == 2\nE       assert 1 == 2")
    assert rule_for(chk(layer="host", longrepr=longrepr), CTX) == ""


def test_expected_401_with_the_registry_down_is_not_a_password_problem():
    c = chk(layer="registry", what="GET /v2/ without credentials is refused", expected="401",
            found="URLError: [Errno 111] Connection refused")
    assert rule_for(c, CTX) == "registry-down"


@pytest.mark.parametrize("check", [
    # seen on the container lab with docker-registry stopped: the journal in the evidence still shows earlier 401s
    chk(layer="registry", what="docker-registry runs and starts at boot", expected="active, enabled",
        found="['inactive', 'enabled']", detail='... "GET /v2/ HTTP/1.1" 401 87 ... level=warning msg="error authorizing'),
    chk(layer="registry", what="curl https://registry:5000/v2/ from node (system CA store)", expected="401", found="000",
        detail="$ curl -sS -o /dev/null -w '%{http_code}' https://registry:5000/v2/\nrc=7\n000\nstderr:\n"
               "curl: (7) Failed to connect to registry port 5000 after 1 ms: Couldn't connect to server"),
    chk(layer="registry", name="test_anonymous_refused", message="ConnectionRefusedError: [Errno 111] Connection refused"),
])
def test_registry_stopped_is_registry_down(check):
    assert rule_for(check, CTX) == "registry-down"


def test_one_table_format_for_verify_and_provision():
    """verify's checks and provision's failures are matched by the same Rule table format and lookup."""
    from labctl.display.failures import Failure
    from labctl.display.hints import CHECK_RULES, FAILURE_RULES, Case, first_rule

    for rules in (CHECK_RULES, FAILURE_RULES):
        keys = [r.key for r in rules]
        assert len(keys) == len(set(keys))
    f = Failure(host="n1", kind="failed", msg="write error: No space left on device")
    assert first_rule(FAILURE_RULES, Case(f.msg, f)).key == "disk-full"
    assert first_rule(FAILURE_RULES, Case("Permission denied", Failure(host="n1", kind="unreachable"))).key == "ssh-auth"
    assert first_rule(FAILURE_RULES, Case("anything else", Failure(host="n1", kind="failed"))) is None
