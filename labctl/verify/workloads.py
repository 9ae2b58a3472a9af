"""The workload manifests of `labctl verify --layer workloads`, rendered for one lab and one run.

Templates live in tests/infra/workloads/<step>.yaml.j2; `render(lab_vars, namespace)`
returns {step: [objects]} with the managed-by label added to every object and every
pod template (the cleanup deletes by that label), and `cleanup_commands()` is the
cleanup the test runs at the end, even after a failure. The images a lab must mirror
for these checks are WORKLOAD_IMAGES (see `mirror_images()`).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from labctl.model.facts import NFS_EXPORT, LabFacts
from labctl.model.versions import PINS
from labctl.state import REPO_ROOT

TEMPLATE_DIR = REPO_ROOT / "tests" / "infra" / "workloads"
MANAGED_BY = "labctl-verify"
LABEL = "app.kubernetes.io/managed-by"
SELECTOR = f"{LABEL}={MANAGED_BY}"
NAMESPACE_PREFIX = "labctl-verify-"
# the steps, in the order the test applies them
STEPS = ("namespace", "whoami", "scheduling", "volumes", "nfs", "nfs-reader", "ingress", "hpa", "load")
# upstream images the workloads use; mirrored to the lab registry with the other images.
# Tags from labctl/model/pins.yml (bundle.agnhost, bundle.busybox: what `labctl bundle build` builds).
WORKLOAD_IMAGES = {
    # Kubernetes' e2e test image; the whoami pods run `agnhost netexec --http-port=8000`:
    # GET /hostname answers the pod name, /readyz is the readiness endpoint
    "agnhost": f"registry.k8s.io/e2e-test-images/agnhost:{PINS['bundle']['agnhost']['tag']}",
    "busybox": f"docker.io/library/busybox:{PINS['bundle']['busybox']['version']}",  # client, jobs, httpd + CGI for the HPA
}
WHOAMI_PATH = "/hostname"  # netexec's endpoint that answers the pod's hostname (= the pod name), nothing else
NODEPORT = 30000  # the course's NodePort
HOST_PATH_ROOT = "/var/lib/labctl-verify"  # hostPath volumes: <root>/<namespace>
INGRESS_CLASSES = {"traefik": "traefik", "ingress-nginx": "nginx"}
HPA_STABILIZATION_SECONDS = 60  # scale-down window (the default 300 s is too long for --slow)
LOAD_SECONDS = 150


def new_namespace() -> str:
    return NAMESPACE_PREFIX + secrets.token_hex(3)


def mirror_images(lab_vars: dict[str, Any]) -> dict[str, str]:
    """role -> image reference as the cluster pulls it (the lab registry when mirroring)."""
    mirror = LabFacts.from_group_vars(lab_vars).mirror
    if not mirror.enabled:
        return dict(WORKLOAD_IMAGES)
    from labctl.model.images import mirror_name

    return {role: mirror_name(ref, mirror.addons_registry, "workloads") for role, ref in WORKLOAD_IMAGES.items()}


def context(lab_vars: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The template variables for one run."""
    nodes = lab_vars.get("lab_nodes") or []
    workers = [n["name"] for n in nodes if n.get("role") == "worker"]
    cps = [n["name"] for n in nodes if n.get("role") == "control-plane"]
    facts = LabFacts.from_group_vars(lab_vars)
    ingress = facts.addons.get("ingress", "none")
    return {
        "namespace": namespace,
        "managed_by": MANAGED_BY,
        "images": mirror_images(lab_vars),
        "workers": workers,
        "control_planes": cps,
        "reader_node": workers[-1] if len(workers) > 1 else (workers[0] if workers else ""),
        "nodeport": NODEPORT,
        "dns_domain": lab_vars.get("lab_dns_domain", "cluster.local"),
        "ingress_class": INGRESS_CLASSES.get(ingress, ingress),
        "ingress_hosts": [f"a.{namespace}.labctl.test", f"b.{namespace}.labctl.test"],
        "nfs_server": facts.nfs.ip,
        "nfs_path": facts.nfs.path,
        "pv_name": namespace,  # PersistentVolumes are cluster-scoped: unique per run
        "host_path": f"{HOST_PATH_ROOT}/{namespace}",
        "hpa_stabilization_seconds": HPA_STABILIZATION_SECONDS,
        "load_seconds": LOAD_SECONDS,
    }


def _label(meta: dict[str, Any], namespace: str) -> None:
    labels = meta.setdefault("labels", {}) or {}
    labels[LABEL] = MANAGED_BY
    labels["app.kubernetes.io/part-of"] = namespace
    meta["labels"] = labels


def add_labels(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The managed-by label on the object and on every pod template inside it."""
    _label(doc.setdefault("metadata", {}), namespace)
    spec = doc.get("spec") or {}
    templates = []
    if isinstance(spec.get("template"), dict):
        templates.append(spec["template"])
    job = spec.get("jobTemplate")
    if isinstance(job, dict):
        _label(job.setdefault("metadata", {}), namespace)
        if isinstance((job.get("spec") or {}).get("template"), dict):
            templates.append(job["spec"]["template"])
    for t in templates:
        _label(t.setdefault("metadata", {}), namespace)
    return doc


def render_step(step: str, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    text = env.get_template(f"{step}.yaml.j2").render(**ctx)
    return [add_labels(d, ctx["namespace"]) for d in yaml.safe_load_all(text) if d]


def render(lab_vars: dict[str, Any], namespace: str) -> dict[str, list[dict[str, Any]]]:
    """{step: objects} for every step."""
    ctx = context(lab_vars, namespace)
    return {step: render_step(step, ctx) for step in STEPS}


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)


def validate(docs: list[dict[str, Any]], minor: str) -> list[str]:
    """Strict kubernetes-validate problems (labctl.provisioning.manifests, the one validator of the project)."""
    from labctl.provisioning.manifests import validate_documents

    return validate_documents(docs, minor)


def cleanup_commands(namespace: str | None) -> list[str]:
    """kubectl arguments that remove this run (or, with None, every stale run): by label, bounded."""
    cmds = []
    if namespace:
        cmds.append(f"delete namespace {namespace} --ignore-not-found --wait=true --timeout=120s")
        cmds.append(f"delete pv -l {LABEL}={MANAGED_BY},app.kubernetes.io/part-of={namespace} "
                    "--ignore-not-found --wait=true --timeout=60s")
    else:
        cmds.append(f"delete namespace -l {SELECTOR} --ignore-not-found --wait=false")
        cmds.append(f"delete pv -l {SELECTOR} --ignore-not-found --wait=false")
    return cmds


def host_cleanup_paths(namespace: str) -> dict[str, str]:
    """Where a run leaves files on machines: group -> path (removed at the end)."""
    return {"k8s_cluster": f"{HOST_PATH_ROOT}/{namespace}", "registry": f"{NFS_EXPORT}/{namespace}"}


def nslookup_answers(stdout: str) -> list[str]:
    """The IPv4 answers of busybox/bind nslookup output (not the server's address), sorted."""
    answers: list[str] = []
    in_answer = False
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("Name:"):
            in_answer = True
            continue
        if in_answer and line.startswith("Address"):
            value = line.split(":", 1)[1].strip().split()[0] if ":" in line else ""
            if value.count(".") == 3:
                answers.append(value)
    return sorted(set(answers))


def pod_name_answer(body: str) -> str:
    """The pod name in netexec's answer to GET /hostname (its whole body, the pod's hostname); "" when the
    body is anything else (an error page, netexec's "NOW: <time>" of GET /, an ingress controller's 404)."""
    name = body.strip()
    return name if re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name) else ""


def template_files() -> list[Path]:
    return sorted(TEMPLATE_DIR.glob("*.yaml.j2"))
