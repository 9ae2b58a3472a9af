"""`labctl render` of the addons, per variant: Helm values against the charts' pinned keys,
labctl's own manifests with kubernetes-validate (strict, the lab's minor), images and ports.

Each variant is rendered once per module (a real ansible-playbook run through `labctl render`).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from labctl.model import addon_images, versions
from labctl.model.config import parse_lab
from labctl.model.images import mirror_name
from labctl.provisioning.manifests import validate_documents
from labctl.state import REPO_ROOT

from .conftest import base_lab, run_labctl, write_lab

CHARTS = REPO_ROOT / "labctl" / "model" / "charts"
# The flag that turns off kubelet certificate verification, built so it is not a literal anywhere.
INSECURE_FLAG = "--kubelet-" + "insecure-tls"


def _variant(name: str) -> dict:
    lab = base_lab()
    if name == "course":  # the course's choices: retired/archived addons, an older minor
        lab["kubernetes"]["version"] = "1.34"
        lab["addons"].update({"ingress": "ingress-nginx", "dashboard": "kubernetes-dashboard", "dashboard_admin": True})
    elif name == "none":
        lab["addons"].update({"ingress": "none", "dashboard": "none", "monitoring": "none", "metrics_server": False})
    elif name == "no-mirror":
        lab["kubernetes"]["mirror_images"] = False
    return lab


VARIANTS = ["default", "course", "none", "no-mirror"]


@pytest.fixture(scope="module", params=VARIANTS)
def rendered(request, tmp_path_factory) -> dict[str, Any]:
    """{'lab': Lab, 'dir': <out>/cluster} for one variant, rendered once by the real CLI."""
    base = tmp_path_factory.mktemp(f"render-{request.param}")
    data = _variant(request.param)
    lab_file = write_lab(base, data)
    out = base / "out"
    proc = run_labctl("render", "--lab", str(lab_file), "--out", str(out), cwd=base, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"variant": request.param, "lab": parse_lab(data), "dir": out / "cluster"}


# -- helpers -------------------------------------------------------------------


def chart_keys(chart: str) -> tuple[str, set[str]]:
    doc = yaml.safe_load((CHARTS / f"{chart}.yml").read_text())
    return doc["version"], set(doc["keys"])


def flatten(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf; a list or a scalar is a leaf, an empty map too."""
    if isinstance(values, dict) and values:
        out: list[str] = []
        for k, v in values.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [prefix]


def undocumented(values: dict, keys: set[str]) -> list[str]:
    """Paths of `values` that are not pinned keys (nor under a pinned `<prefix>.*`)."""
    bad = []
    for path in flatten(values):
        parts = path.split(".")
        if path in keys or any(".".join(parts[:i]) + ".*" in keys for i in range(1, len(parts))):
            continue
        bad.append(path)
    return bad


VALUES_FILES = {  # rendered file -> chart key file
    "traefik-values.yaml": "traefik",
    "ingress-nginx-values.yaml": "ingress-nginx",
    "metrics-server-values.yaml": "metrics-server",
    "headlamp-values.yaml": "headlamp",
    "kubernetes-dashboard-values.yaml": "kubernetes-dashboard",
    "kube-prometheus-stack-values.yaml": "kube-prometheus-stack",
}
MANIFESTS = ["ingress-example.yaml", "dashboard-accounts.yaml", "grafana-admin-secret.yaml"]


def expected_files(lab) -> set[str]:
    a = lab.addons
    out: set[str] = set()
    if a.metrics_server:
        out.add("metrics-server-values.yaml")
    if a.ingress != "none":
        out |= {f"{a.ingress}-values.yaml", "ingress-example.yaml"}
    if a.dashboard != "none":
        out |= {f"{a.dashboard}-values.yaml", "dashboard-accounts.yaml"}
    if a.monitoring != "none":
        out |= {"kube-prometheus-stack-values.yaml", "grafana-admin-secret.yaml"}
    return out


def load(rendered, name: str) -> Any:
    return yaml.safe_load((rendered["dir"] / name).read_text())


def image_refs(values: Any) -> list[str]:
    """Every image a values tree names: maps holding repository/image + tag (+ optional registry)."""
    out: list[str] = []
    if isinstance(values, dict):
        repo = values.get("repository", values.get("image"))
        if isinstance(repo, str) and "tag" in values:
            reg = values.get("registry")
            out.append(f"{reg}/{repo}:{values['tag']}" if reg else f"{repo}:{values['tag']}")
        for v in values.values():
            out += image_refs(v)
    elif isinstance(values, list):
        for v in values:
            out += image_refs(v)
    return out


def manifest_images(docs: list[dict]) -> list[str]:
    out = []
    for d in docs:
        spec = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
        out += [c["image"] for c in spec.get("containers", [])]
    return out


# -- the tests -----------------------------------------------------------------


def test_each_chosen_addon_renders_its_files_and_no_other(rendered):
    addon_files = set(VALUES_FILES) | set(MANIFESTS)
    present = {p.name for p in rendered["dir"].iterdir()} & addon_files if rendered["dir"].exists() else set()
    assert present == expected_files(rendered["lab"])


def test_values_use_only_the_charts_documented_keys(rendered):
    checked = 0
    for name, chart in VALUES_FILES.items():
        path = rendered["dir"] / name
        if not path.exists():
            continue
        version, keys = chart_keys(chart)
        assert version == versions.ADDONS[chart].version, f"labctl/model/charts/{chart}.yml pins {version}"
        assert undocumented(yaml.safe_load(path.read_text()), keys) == [], name
        checked += 1
    assert checked == len([f for f in expected_files(rendered["lab"]) if f in VALUES_FILES])


def _misspell(values: dict, path: str) -> str:
    """Rename the last key of `path` in place (nodePort -> nodeport, type -> Type); return the new path."""
    *parents, last = path.split(".")
    node = values
    for p in parents:
        node = node[p]
    wrong = last.lower() if last != last.lower() else last.capitalize()
    node[wrong] = node.pop(last)
    return ".".join([*parents, wrong])


def test_a_misspelled_key_is_caught(rendered):
    """The checker is what stands between a typo and Helm silently ignoring it: prove it bites."""
    files = [n for n in VALUES_FILES if (rendered["dir"] / n).exists()]
    assert len(files) == len([f for f in expected_files(rendered["lab"]) if f in VALUES_FILES])
    for name in files:
        values = load(rendered, name)
        _, keys = chart_keys(VALUES_FILES[name])
        deepest = max(flatten(values), key=lambda p: p.count("."))
        wrong = _misspell(values, deepest)
        assert undocumented(values, keys) == [wrong], name
    if "traefik-values.yaml" in files:  # the classic: nodeport instead of nodePort, a top-level typo
        values = load(rendered, "traefik-values.yaml")
        _, keys = chart_keys("traefik")
        values["ports"]["web"]["nodeport"] = values["ports"]["web"].pop("nodePort")
        values["servce"] = values.pop("service")
        assert sorted(undocumented(values, keys)) == ["ports.web.nodeport", "servce.type"]


def test_labctls_own_manifests_validate_strictly_for_the_labs_minor(rendered):
    lab = rendered["lab"]
    docs = []
    for name in MANIFESTS:
        path = rendered["dir"] / name
        if path.exists():
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    if not docs:
        assert expected_files(lab) & set(MANIFESTS) == set()
        return
    assert validate_documents(docs, lab.kubernetes.minor) == []


def test_every_image_is_the_pinned_one_and_comes_from_the_mirror_when_mirroring(rendered):
    lab = rendered["lab"]
    found: list[str] = []
    for name in VALUES_FILES:
        path = rendered["dir"] / name
        if path.exists():
            found += image_refs(yaml.safe_load(path.read_text()))
    example = rendered["dir"] / "ingress-example.yaml"
    if example.exists():
        found += manifest_images([d for d in yaml.safe_load_all(example.read_text()) if d])
    upstream = addon_images.images(lab)
    if lab.kubernetes.mirror_images:
        registry = f"{lab.registry_node.name}:{lab.registry.port}"
        expected = {mirror_name(ref, registry, "addons") for ref in upstream}
        assert all(ref.startswith(registry + "/") for ref in found), found
    else:
        expected = set(upstream)
    assert set(found) == expected


def test_nothing_turns_off_kubelet_tls_verification(rendered):
    for path in rendered["dir"].glob("*"):
        assert INSECURE_FLAG not in path.read_text(), path.name


def test_nodeports_are_the_labs(rendered):
    lab = rendered["lab"]
    a = lab.addons
    if a.ingress == "traefik":
        v = load(rendered, "traefik-values.yaml")
        assert (v["service"]["type"], v["ports"]["web"]["nodePort"], v["ports"]["websecure"]["nodePort"]) == (
            "NodePort", a.ingress_http_nodeport, a.ingress_https_nodeport)
        assert v["providers"]["kubernetesGateway"]["enabled"] is True
    if a.ingress == "ingress-nginx":
        v = load(rendered, "ingress-nginx-values.yaml")["controller"]["service"]
        assert (v["type"], v["nodePorts"]) == ("NodePort", {"http": a.ingress_http_nodeport, "https": a.ingress_https_nodeport})
    if a.dashboard == "headlamp":
        v = load(rendered, "headlamp-values.yaml")
        assert (v["service"]["type"], v["service"]["nodePort"]) == ("NodePort", a.dashboard_nodeport)
    if a.dashboard == "kubernetes-dashboard":
        v = load(rendered, "kubernetes-dashboard-values.yaml")["kong"]["proxy"]
        assert (v["type"], v["tls"]["nodePort"]) == ("NodePort", a.dashboard_nodeport)
    if a.monitoring != "none":
        v = load(rendered, "kube-prometheus-stack-values.yaml")["grafana"]["service"]
        assert (v["type"], v["nodePort"]) == ("NodePort", a.grafana_nodeport)


def test_web_ui_accounts_are_least_privilege(rendered):
    lab = rendered["lab"]
    if lab.addons.dashboard == "none":
        return
    docs = [d for d in yaml.safe_load_all((rendered["dir"] / "dashboard-accounts.yaml").read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert "Secret" not in kinds  # no long-lived token Secret
    admin_bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "cluster-admin"]
    assert len(admin_bindings) == (1 if lab.addons.dashboard_admin else 0)
    viewer = [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "labctl-viewer-view"]
    assert viewer and viewer[0]["roleRef"]["name"] == "view"
    for role in (d for d in docs if d["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            assert "secrets" not in rule["resources"]
    if lab.addons.dashboard == "headlamp":
        assert load(rendered, "headlamp-values.yaml")["clusterRoleBinding"]["create"] is False


def test_grafana_password_comes_from_a_secret_not_the_values(rendered):
    lab = rendered["lab"]
    if lab.addons.monitoring == "none":
        return
    text = (rendered["dir"] / "kube-prometheus-stack-values.yaml").read_text()
    grafana = yaml.safe_load(text)["grafana"]
    assert "adminPassword" not in grafana
    assert grafana["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user", "passwordKey": "admin-password"}
    secret = [d for d in yaml.safe_load_all((rendered["dir"] / "grafana-admin-secret.yaml").read_text())
              if d and d["kind"] == "Secret"][0]
    assert secret["metadata"]["name"] == "grafana-admin"
    assert secret["stringData"]["admin-password"].startswith("<the content of ")
    assert secret["stringData"]["admin-password"].endswith("/secrets/grafana-admin-password>")


def test_control_plane_targets_are_the_control_plane_ips(rendered):
    lab = rendered["lab"]
    if lab.addons.monitoring == "none":
        return
    v = load(rendered, "kube-prometheus-stack-values.yaml")
    cps = [str(n.ip) for n in lab.control_planes]
    nodes = [str(n.ip) for n in lab.nodes if n.role != "registry"]
    ports = {"kubeControllerManager": 10257, "kubeScheduler": 10259, "kubeEtcd": 2381, "kubeProxy": 10249}
    for component, port in ports.items():
        assert v[component]["endpoints"] == (nodes if component == "kubeProxy" else cps), component
        assert v[component]["service"] == {"port": port, "targetPort": port}, component
    assert v["kubeEtcd"]["serviceMonitor"]["scheme"] == "http"
    assert v["kubeControllerManager"]["serviceMonitor"]["https"] is True
    assert v["prometheus-node-exporter"]["tolerations"] == [{"operator": "Exists"}]
    assert v["grafana"]["sidecar"]["datasources"]["isDefaultDatasource"] is True


def test_example_ingress_routes_two_host_names(rendered):
    lab = rendered["lab"]
    if lab.addons.ingress == "none":
        return
    docs = [d for d in yaml.safe_load_all((rendered["dir"] / "ingress-example.yaml").read_text()) if d]
    ing = next(d for d in docs if d["kind"] == "Ingress")
    assert [r["host"] for r in ing["spec"]["rules"]] == [f"whoami.{lab.name}.test", f"whoami2.{lab.name}.test"]
    assert ing["spec"]["ingressClassName"] == ("traefik" if lab.addons.ingress == "traefik" else "nginx")
