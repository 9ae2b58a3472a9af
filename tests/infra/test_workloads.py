"""Layer `workloads`: the course's own checks (docs/course.md §11) as real workloads.

Everything runs in a namespace `labctl-verify-<random>`; every object carries
`app.kubernetes.io/managed-by: labctl-verify` (labctl/verify/workloads.py adds it), and the
module fixture deletes the namespace, the PersistentVolume and the files left on the
nodes at the end -- also when a check fails; runs that were killed are cleaned up by
label at the start of the next one. Every wait is bounded and, when it gives up, the
failure carries the pods and the namespace's last events.

kubectl runs on the first control-plane node over testinfra's SSH connection, with
/etc/kubernetes/admin.conf: the version that matches the cluster is there, nothing
has to be installed on the machine running labctl, and it reuses the ControlPath.
What must be proven "from the machine running labctl" (NodePort, Ingress) is
requested from this process with urllib.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from _check import check, expect, output
from _lab import group_vars, node_host

from labctl.model.facts import LabFacts
from labctl.verify import workloads

pytestmark = pytest.mark.xdist_group("workloads")

KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=20s"
SLOW = bool(os.environ.get("LABCTL_VERIFY_SLOW"))


K8S_NODES = [n for n in group_vars().get("lab_nodes", []) if n["role"] in ("control-plane", "worker")]


class Kube:
    """kubectl on the control plane, in one namespace."""

    def __init__(self, host: Any, namespace: str | None):
        self.host = host
        self.ns = namespace

    def run(self, args: str, *quoted: str, stdin: str | None = None):
        """kubectl <args>; each %s in args takes one of `quoted` (shell-quoted); stdin is piped in."""
        ns = f"-n {self.ns} " if self.ns else ""
        if stdin is None:
            return self.host.run(f"{KUBECTL} {ns}{args}", *quoted)
        return self.host.run(f"printf %%s %s | {KUBECTL} {ns}{args}", stdin, *quoted)

    def ok(self, args: str, what: str, stdin: str | None = None) -> str:
        out = self.run(args, stdin=stdin)
        check(out.rc == 0, what, expected="kubectl succeeds", found=f"rc={out.rc}: {out.stderr.strip()[:200]}",
              detail=output(out))
        return out.stdout

    def get(self, what: str) -> dict:
        out = self.run(f"get {what} -o json")
        if out.rc != 0:
            return {}
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {}

    def apply(self, docs: list[dict], what: str) -> None:
        if docs:
            self.ok("apply -f -", f"apply {what}", stdin=workloads.to_yaml(docs))

    def evidence(self) -> str:
        pods = self.run("get pods -o wide").stdout
        events = self.run("get events --sort-by=.lastTimestamp").stdout.splitlines()[-15:]
        return "pods:\n" + pods + "\nlast events:\n" + "\n".join(events)

    def wait(self, what: str, probe, timeout: float, expected: str, interval: float = 2.0):
        """Poll probe() until it returns a truthy value; fail with the last value and evidence after timeout."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = probe()
            if last:
                return last
            if time.monotonic() >= deadline:
                check(False, what, expected=expected, found=f"not within {timeout:.0f}s (last: {last!r})",
                      detail=self.evidence())
            time.sleep(interval)


NOT_INSTALLED = ("{addon} is not installed: the addons phase stopped (its Helm chart archive cannot be had; "
                 "labctl provision said which)")


@pytest.fixture(scope="module")
def wl(lab_vars: dict, lab_nodes: list[dict], request: pytest.FixtureRequest):
    """Render, clean stale runs, apply every step, and always clean up at the end."""
    cps = [n["name"] for n in lab_nodes if n["role"] == "control-plane"]
    if not cps:
        pytest.fail("no control-plane node in the inventory")
    cp = node_host(cps[0])
    root = Kube(cp, None)
    for cmd in workloads.cleanup_commands(None):  # stale runs (a killed verify)
        root.run(cmd)
    ns = workloads.new_namespace()
    docs = workloads.render(lab_vars, ns)
    lab_facts = LabFacts.from_group_vars(lab_vars)
    state = SimpleNamespace(ns=ns, docs=docs, kube=Kube(cp, ns), lab_vars=lab_vars, cp=cp,
                            ctx=workloads.context(lab_vars, ns),
                            nfs=lab_facts.nfs.enabled,
                            ingress="ingress" in lab_facts.addons,
                            metrics="metrics_server" in lab_facts.addons)
    # an addon lab.yml turns on may not be installed: the addons phase stops when its Helm chart
    # cannot be had (no chart repository reachable, no archive in packages_dir); those checks skip
    state.not_installed = {
        "ingress": state.ingress and not root.run("get ingressclass -o name").stdout.strip(),
        "metrics": state.metrics and root.run("get apiservice v1beta1.metrics.k8s.io").rc != 0,
    }

    def cleanup() -> None:
        for cmd in workloads.cleanup_commands(ns):
            root.run(cmd)
        paths = workloads.host_cleanup_paths(ns)
        for n in lab_nodes:
            group = "registry" if n["role"] == "registry" else "k8s_cluster"
            if group == "registry" and not state.nfs:
                continue
            node_host(n["name"]).run("rm -rf -- %s", paths[group])

    request.addfinalizer(cleanup)
    kube = state.kube
    root.ok("apply -f -", "create the verify namespace", stdin=workloads.to_yaml(docs["namespace"]))
    for step in ("whoami", "scheduling", "volumes"):
        kube.apply(docs[step], step)
    if state.nfs:
        kube.apply(docs["nfs"], "nfs")
    if state.ingress and not state.not_installed["ingress"]:
        kube.apply(docs["ingress"], "ingress")
    if state.metrics and not state.not_installed["metrics"]:
        kube.apply(docs["hpa"], "hpa")
    return state


def _pods(kube: Kube, app: str) -> list[dict]:
    return kube.get(f"pods -l app.kubernetes.io/name={app}").get("items", [])


def _phase(kube: Kube, pod: str) -> str:
    return (kube.get(f"pod {pod}").get("status") or {}).get("phase", "")


def _ready_whoami(wl) -> list[dict]:
    def probe():
        d = wl.kube.get("deployment whoami")
        return (d.get("status") or {}).get("readyReplicas", 0) == 3
    wl.kube.wait("whoami Deployment ready", probe, 240, "3 ready replicas")
    return [p for p in _pods(wl.kube, "whoami") if p["status"].get("phase") == "Running"]


def _exec(wl, pod: str, cmd: str, container: str | None = None):
    c = f"-c {container} " if container else ""
    return wl.kube.run(f"exec {pod} {c}-- sh -c %s", cmd)


def _client(wl) -> str:
    wl.kube.wait("client pod running", lambda: _phase(wl.kube, "client") == "Running", 180, "phase Running")
    return "client"


# ---------------------------------------------------------------- whoami and Services
# The whoami pods run agnhost netexec: GET /hostname answers the pod's hostname (the pod name) and nothing
# else, without a newline (workloads.pod_name_answer parses it).

def test_whoami_spread_over_workers(wl):
    pods = _ready_whoami(wl)
    workers = set(wl.ctx["workers"])
    nodes = sorted({p["spec"].get("nodeName", "") for p in pods})
    check(set(nodes) <= workers, "whoami pods run on workers only", expected=sorted(workers), found=nodes)
    want = min(len(workers), 3)
    check(len(nodes) >= min(want, 2), "whoami pods spread over the workers",
          expected=f">= {min(want, 2)} distinct nodes", found=nodes)


def test_clusterip_balances_between_pods(wl):
    _ready_whoami(wl)
    _client(wl)
    path = workloads.WHOAMI_PATH
    out = _exec(wl, "client", f"for i in $(seq 30); do wget -q -O- -T 3 http://whoami:8080{path}; echo; done")
    names = sorted({n for n in map(workloads.pod_name_answer, out.stdout.splitlines()) if n.startswith("whoami-")})
    check(len(names) >= 2, "ClusterIP Service whoami:8080 -> 8000 answered by different pods",
          expected=">= 2 distinct pod names in 30 requests", found=names or out.stderr.strip()[:200], detail=output(out))


@pytest.mark.parametrize("node", [n["name"] for n in K8S_NODES])
def test_nodeport_answers_on_every_node(wl, node):
    _ready_whoami(wl)
    ip = next(n["ip"] for n in wl.lab_vars["lab_nodes"] if n["name"] == node)
    url = f"http://{ip}:{workloads.NODEPORT}{workloads.WHOAMI_PATH}"
    last = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
                body = resp.read(4000).decode(errors="replace")
            name = workloads.pod_name_answer(body)
            check(name.startswith("whoami-"), f"NodePort {workloads.NODEPORT} answers from this machine",
                  expected="a whoami pod's name", found=body[:200], node=node)
            return
        except (OSError, urllib.error.URLError) as exc:
            last = str(getattr(exc, "reason", exc))
            time.sleep(2)
    check(False, f"NodePort {workloads.NODEPORT} answers from this machine", expected=f"HTTP 200 from {url}",
          found=f"unanswered: {last}", node=node)


def test_headless_service_resolves_to_pod_ips(wl):
    pods = _ready_whoami(wl)
    _client(wl)
    name = f"whoami-headless.{wl.ns}.svc.{wl.ctx['dns_domain']}"
    want = sorted(p["status"]["podIP"] for p in pods)
    out = _exec(wl, "client", f"nslookup {name}")
    expect(workloads.nslookup_answers(out.stdout), want, f"headless Service {name} resolves to the pod IPs",
           detail=output(out))


def test_service_dns_through_coredns(wl):
    _client(wl)
    svc = wl.kube.get("service whoami")
    ip = (svc.get("spec") or {}).get("clusterIP", "?")
    name = f"whoami.{wl.ns}.svc.{wl.ctx['dns_domain']}"
    out = _exec(wl, "client", f"nslookup {name}")
    expect(workloads.nslookup_answers(out.stdout), [ip], f"{name} resolves through CoreDNS", detail=output(out))


# ---------------------------------------------------------------- scheduling, jobs

def test_daemonset_on_every_worker_not_on_control_plane(wl):
    workers = sorted(wl.ctx["workers"])

    def probe():
        ds = wl.kube.get("daemonset every-worker").get("status") or {}
        return ds.get("numberReady", 0) == len(workers) and ds.get("desiredNumberScheduled") == len(workers)
    wl.kube.wait("DaemonSet every-worker ready", probe, 180, f"{len(workers)} ready pods")
    nodes = sorted(p["spec"].get("nodeName", "") for p in _pods(wl.kube, "every-worker"))
    expect(nodes, workers, "DaemonSet pods: one per worker, none on the tainted control plane")


def test_job_completes(wl):
    def probe():
        return (wl.kube.get("job once").get("status") or {}).get("succeeded", 0) >= 1
    wl.kube.wait("Job once completes", probe, 180, "succeeded >= 1")


def test_cronjob_fires(wl):
    def probe():
        jobs = wl.kube.get("jobs").get("items", [])
        return any(any(o.get("kind") == "CronJob" for o in j["metadata"].get("ownerReferences", []))
                   and (j.get("status") or {}).get("succeeded", 0) >= 1 for j in jobs)
    wl.kube.wait("CronJob every-minute fires and its Job completes", probe, 150, "a completed Job owned by the CronJob",
                 interval=5)


def test_node_selector_honoured(wl):
    if not wl.ctx["workers"]:
        pytest.skip("no worker in lab.yml")
    wl.kube.wait("pod pinned running", lambda: _phase(wl.kube, "pinned") == "Running", 180, "phase Running")
    node = wl.kube.get("pod pinned")["spec"].get("nodeName")
    expect(node, wl.ctx["workers"][0], "nodeSelector kubernetes.io/hostname honoured")


def test_toleration_honoured(wl):
    wl.kube.wait("pod tolerant running", lambda: _phase(wl.kube, "tolerant") == "Running", 180, "phase Running")
    node = wl.kube.get("pod tolerant")["spec"].get("nodeName")
    expect(node, wl.ctx["control_planes"][0], "a pod tolerating the control-plane taint runs there")


# ---------------------------------------------------------------- volumes

def _volumes_running(wl) -> dict:
    wl.kube.wait("pod volumes running", lambda: _phase(wl.kube, "volumes") == "Running", 180, "phase Running")
    return wl.kube.get("pod volumes")


def test_configmap_mounted_as_file(wl):
    _volumes_running(wl)
    out = _exec(wl, "volumes", "cat /etc/greeting/greeting.txt", "reader")
    expect(out.stdout.strip(), f"hello from {wl.ns}", "ConfigMap greeting mounted as a file", detail=output(out))


def test_emptydir_shared_by_two_containers(wl):
    _volumes_running(wl)
    out = _exec(wl, "volumes", "for i in 1 2 3 4 5; do [ -s /shared/note ] && break; sleep 1; done; cat /shared/note",
                "reader")
    expect(out.stdout.strip(), "shared-by-writer", "emptyDir written by one container, read by the other",
           detail=output(out))


def test_hostpath_volume(wl):
    pod = _volumes_running(wl)
    node = pod["spec"].get("nodeName", "")
    f = node_host(node).file(f"{wl.ctx['host_path']}/note")
    found = f.content_string.strip() if f.exists else "(no file)"
    expect(found, "on-the-host", f"hostPath {wl.ctx['host_path']} written by the pod, seen on the node", node=node)


def test_nfs_volume_survives_the_pod(wl):
    if not wl.nfs:
        pytest.skip("no registry node in lab.yml: no NFS export")
    kube = wl.kube

    def done(pod):
        return lambda: _phase(kube, pod) in ("Succeeded", "Failed") and _phase(kube, pod)
    phase = kube.wait("pod nfs-writer finished", done("nfs-writer"), 180, "phase Succeeded")
    expect(phase, "Succeeded", "a pod writes to the NFS PersistentVolume", detail=kube.run("logs nfs-writer").stdout)
    kube.ok("delete pod nfs-writer --wait=true --timeout=60s", "delete the writer pod")
    kube.apply(wl.docs["nfs-reader"], "nfs-reader")
    phase = kube.wait("pod nfs-reader finished", done("nfs-reader"), 180, "phase Succeeded")
    logs = kube.run("logs nfs-reader").stdout.strip()
    expect(logs, "written-by-nfs-writer", "the next pod reads what the deleted pod wrote on NFS",
           detail=f"phase {phase}\n" + kube.evidence())


# ---------------------------------------------------------------- ingress, HPA

def _get_with_host(url: str, host: str) -> str:
    req = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return resp.read(4000).decode(errors="replace")


def test_ingress_routes_two_hosts(wl):
    if not wl.ingress:
        pytest.skip("addons.ingress: none")
    if wl.not_installed["ingress"]:
        pytest.skip(NOT_INSTALLED.format(addon=f"the ingress controller ({wl.lab_vars['lab_addons']['ingress']})"))
    _ready_whoami(wl)
    wl.kube.wait("whoami-b ready", lambda: (wl.kube.get("deployment whoami-b").get("status") or {}).get("readyReplicas"),
                 180, "1 ready replica")
    port = (wl.lab_vars.get("lab_addons") or {}).get("ingress_http_nodeport", 30080)
    ip = next(n["ip"] for n in wl.lab_vars["lab_nodes"] if n["role"] == "worker" or n["role"] == "control-plane")
    url = f"http://{ip}:{port}{workloads.WHOAMI_PATH}"
    results = {}
    for host, prefix in zip(wl.ctx["ingress_hosts"], ("whoami-", "whoami-b-"), strict=True):
        body, last = "", ""
        for _ in range(15):  # the controller picks the Ingress up within seconds
            try:
                body = _get_with_host(url, host)
                if workloads.pod_name_answer(body):
                    break
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(2)
        name = workloads.pod_name_answer(body)
        results[host] = name or f"unanswered: {last or body[:100]}"
        ok = name.startswith(prefix) and (prefix == "whoami-b-" or not name.startswith("whoami-b-"))
        check(ok, f"Ingress routes {host}", expected=f"a pod named {prefix}*", found=results[host],
              detail=f"GET {url} Host: {host}")


def test_hpa_scales_up_under_load(wl):
    if not wl.metrics:
        pytest.skip("addons.metrics_server: false")
    if wl.not_installed["metrics"]:
        pytest.skip(NOT_INSTALLED.format(addon="metrics-server"))
    kube = wl.kube

    def has_metrics():
        st = kube.get("hpa cpu").get("status") or {}
        return bool(st.get("currentMetrics"))
    kube.wait("HPA cpu reads CPU metrics", has_metrics, 180, "status.currentMetrics present", interval=5)
    kube.apply(wl.docs["load"], "load")

    def scaled():
        st = kube.get("hpa cpu").get("status") or {}
        return st.get("desiredReplicas", 0) > 1 and st.get("desiredReplicas")
    replicas = kube.wait("HPA cpu scales up under load", scaled, workloads.LOAD_SECONDS + 60, "desiredReplicas > 1",
                         interval=5)
    check(replicas > 1, "HPA scaled the Deployment up", expected="> 1 replica", found=replicas)
    kube.run("delete job load --wait=false")
    if not SLOW:
        return
    window = workloads.HPA_STABILIZATION_SECONDS

    def back_down():
        st = kube.get("hpa cpu").get("status") or {}
        return st.get("currentReplicas") == 1 and st.get("desiredReplicas") == 1
    kube.wait("HPA cpu scales back down after the load", back_down, window + 240, "1 replica", interval=10)
