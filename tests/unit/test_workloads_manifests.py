"""The workload manifests of `labctl verify`: strict kubernetes-validate for every pinned minor,
the cleanup label on everything, images from the lab registry, the nslookup parser."""

from __future__ import annotations

import pytest

from labctl.model import versions
from labctl.verify import workloads

GV = {
    "lab_nodes": [{"name": "master", "role": "control-plane", "ip": "192.168.56.21"},
                  {"name": "node1", "role": "worker", "ip": "192.168.56.31"},
                  {"name": "node2", "role": "worker", "ip": "192.168.56.32"},
                  {"name": "registry", "role": "registry", "ip": "192.168.56.100"}],
    "lab_mirror": {"enabled": True, "addons_registry": "registry:5000"},
    "lab_nfs": {"enabled": True, "server": "registry", "ip": "192.168.56.100", "path": "/srv/nfs/labctl"},
    "lab_dns_domain": "cluster.local", "lab_addons": {"ingress": "traefik", "metrics_server": True},
    "lab_addons_enabled": {"metrics_server": "metrics-server", "ingress": "traefik"},
}
NS = "labctl-verify-0a1b2c"


@pytest.fixture(scope="module")
def rendered():
    return workloads.render(GV, NS)


def _all(rendered):
    return [d for docs in rendered.values() for d in docs]


@pytest.mark.parametrize("minor", list(versions.KUBERNETES))
def test_every_step_validates_strictly(rendered, minor):
    for step, docs in rendered.items():
        assert docs, step
        assert workloads.validate(docs, minor) == [], step


def test_the_validator_can_fail(rendered):
    bad = [dict(rendered["whoami"][0], spec={**rendered["whoami"][0]["spec"], "replica": 3})]
    assert workloads.validate(bad, "1.37")


def test_every_template_is_a_step():
    assert sorted(p.name.removesuffix(".yaml.j2") for p in workloads.template_files()) == sorted(workloads.STEPS)


def _pod_templates(doc):
    spec = doc.get("spec") or {}
    if "template" in spec:
        yield spec["template"]
    if "jobTemplate" in spec:
        yield spec["jobTemplate"]
        yield spec["jobTemplate"]["spec"]["template"]


def test_everything_is_labelled_and_found_by_the_cleanup(rendered):
    for doc in _all(rendered):
        for meta in [doc["metadata"]] + [t["metadata"] for t in _pod_templates(doc)]:
            assert meta["labels"][workloads.LABEL] == workloads.MANAGED_BY, doc["metadata"]["name"]
            assert meta["labels"]["app.kubernetes.io/part-of"] == NS
        # the cleanup deletes the namespace (everything namespaced) and PVs by label: nothing else may exist
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NS
        elif doc["kind"] == "PersistentVolume":
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NS, doc["kind"]
    cmds = workloads.cleanup_commands(NS)
    assert any(c.startswith(f"delete namespace {NS} ") for c in cmds)
    assert any(c.startswith("delete pv -l app.kubernetes.io/managed-by=labctl-verify,app.kubernetes.io/part-of=" + NS)
               for c in cmds)
    assert all("--timeout=" in c for c in cmds)
    stale = workloads.cleanup_commands(None)
    assert stale == ["delete namespace -l app.kubernetes.io/managed-by=labctl-verify --ignore-not-found --wait=false",
                     "delete pv -l app.kubernetes.io/managed-by=labctl-verify --ignore-not-found --wait=false"]


def test_images_come_from_the_lab_registry(rendered):
    images = {c["image"] for d in _all(rendered) for t in _pod_templates(d) if "spec" in t and "containers" in t["spec"]
              for c in t["spec"]["containers"]}
    images |= {c["image"] for d in _all(rendered) if d["kind"] == "Pod" for c in d["spec"]["containers"]}
    tag = versions.PINS["bundle"]["agnhost"]["tag"]
    assert images == {f"registry:5000/e2e-test-images/agnhost:{tag}", "registry:5000/library/busybox:1.35.0"}
    assert workloads.mirror_images({**GV, "lab_mirror": {"enabled": False}}) == workloads.WORKLOAD_IMAGES


def test_the_course_shape(rendered):
    by = {(d["kind"], d["metadata"]["name"]): d for d in _all(rendered)}
    assert by[("Deployment", "whoami")]["spec"]["replicas"] == 3
    assert by[("Service", "whoami")]["spec"]["ports"][0] == {"name": "http", "port": 8080, "targetPort": 8000}
    assert by[("Service", "whoami-nodeport")]["spec"]["ports"][0]["nodePort"] == 30000
    assert by[("Service", "whoami-headless")]["spec"]["clusterIP"] == "None"
    for name in ("whoami", "whoami-b"):  # agnhost netexec on :8000, ready on its /readyz
        c = by[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["netexec", "--http-port=8000"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert "tolerations" not in by[("DaemonSet", "every-worker")]["spec"]["template"]["spec"]
    assert by[("PersistentVolume", NS)]["spec"]["nfs"] == {"server": "192.168.56.100", "path": workloads.NFS_EXPORT}
    assert by[("Pod", "nfs-reader")]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "node2"}
    assert [r["host"] for r in by[("Ingress", "two-hosts")]["spec"]["rules"]] == [f"a.{NS}.labctl.test",
                                                                                  f"b.{NS}.labctl.test"]
    assert by[("Ingress", "two-hosts")]["spec"]["ingressClassName"] == "traefik"
    load = by[("Job", "load")]["spec"]
    assert load["activeDeadlineSeconds"] == workloads.LOAD_SECONDS + 60  # the load is bounded


def test_nslookup_answers():
    busybox = ("Server:\t\t10.254.0.10\nAddress:\t10.254.0.10:53\n\nName:\twhoami-headless.ns.svc.cluster.local\n"
               "Address: 10.244.1.5\nName:\twhoami-headless.ns.svc.cluster.local\nAddress: 10.244.2.7\n")
    assert workloads.nslookup_answers(busybox) == ["10.244.1.5", "10.244.2.7"]
    assert workloads.nslookup_answers("** server can't find x: NXDOMAIN\n") == []


def test_pod_name_answer():
    # netexec's GET /hostname answers os.Hostname() and nothing else (no newline)
    assert workloads.pod_name_answer("whoami-6d9c7b9f5-x2k8q") == "whoami-6d9c7b9f5-x2k8q"
    assert workloads.pod_name_answer("whoami-b-7f5d8-abcde\n") == "whoami-b-7f5d8-abcde"
    assert workloads.pod_name_answer("NOW: 2026-11-29 20:48:49.758665129 +0000 UTC m=+1.53") == ""  # GET /
    assert workloads.pod_name_answer("404 page not found\n") == ""
    assert workloads.pod_name_answer("<html><body>404 Not Found</body></html>") == ""
    assert workloads.pod_name_answer("") == ""
