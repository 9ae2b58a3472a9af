"""Addons without a render: image lists, pins, role contracts, and the dashboard/grafana commands."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from labctl.commands import dashboard, grafana
from labctl.model import addon_images, versions
from labctl.model.config import parse_lab
from labctl.state import REPO_ROOT, StateDir

from .conftest import base_lab, run_labctl, write_lab

ADDON_ROLES = ["helm", "metrics_server", "ingress", "dashboard", "monitoring"]
ROLE_OF = {"traefik": "ingress", "ingress-nginx": "ingress", "metrics-server": "metrics_server",
           "headlamp": "dashboard", "kubernetes-dashboard": "dashboard", "kube-prometheus-stack": "monitoring"}
INSECURE_FLAG = "--kubelet-" + "insecure-tls"


def lab_with(version: str = "1.37", **addons):
    data = base_lab()
    data["kubernetes"]["version"] = version
    data["addons"].update(addons)
    return parse_lab(data)


def test_images_follow_the_choices():
    default = addon_images.images(lab_with())
    assert "ghcr.io/headlamp-k8s/headlamp:v0.38.0" in default
    assert "registry.k8s.io/metrics-server/metrics-server:v0.8.0" in default
    assert not any("ingress-nginx/controller" in r or "kubernetesui" in r for r in default)
    course = addon_images.images(lab_with("1.34", ingress="ingress-nginx", dashboard="kubernetes-dashboard"))
    assert "registry.k8s.io/ingress-nginx/controller:v1.15.1" in course
    assert sum("docker.io/kubernetesui/" in r for r in course) == 4
    assert not any("traefik:" in r.split("/")[-1] or "headlamp" in r for r in course)
    none = lab_with(ingress="none", dashboard="none", monitoring="none", metrics_server=False)
    assert addon_images.images(none) == []


def test_images_are_full_references_without_duplicates():
    refs = addon_images.images(lab_with())
    assert len(refs) == len(set(refs))
    for ref in refs:
        assert re.match(r"^[a-z0-9.-]+\.[a-z]+/[a-z0-9._/-]+:[A-Za-z0-9._-]+$", ref), ref


@pytest.mark.parametrize("addon", sorted(ROLE_OF))
def test_every_pinned_chart_has_images_and_pinned_keys(addon):
    table = addon_images.image_table(ROLE_OF[addon], addon)
    assert table and all(set(i) == {"registry", "repository", "tag"} for i in table.values())
    keys = yaml.safe_load((REPO_ROOT / "labctl" / "model" / "charts" / f"{addon}.yml").read_text())
    assert keys["version"] == versions.ADDONS[addon].version
    assert keys["keys"] and keys["source"]


def test_a_pin_without_images_is_refused_with_the_way_out(monkeypatch):
    monkeypatch.setitem(versions.ADDONS, "headlamp", versions.AddonRelease("headlamp", "9.9.9", "1.24", "1.37"))
    with pytest.raises(KeyError, match="roles/dashboard/vars/main.yml has no images for headlamp 9.9.9"):
        addon_images.image_table("dashboard", "headlamp")


def test_helm_pin_has_a_checksum():
    checks = yaml.safe_load((REPO_ROOT / "roles/helm/vars/main.yml").read_text())["helm_checksums"]
    pinned = checks[versions.ADDONS["helm"].version]
    assert re.fullmatch(r"[0-9a-f]{64}", pinned["amd64"])


@pytest.mark.parametrize("role", ADDON_ROLES)
def test_argument_specs_list_the_defaults(role):
    defaults = yaml.safe_load((REPO_ROOT / "roles" / role / "defaults/main.yml").read_text())
    specs = yaml.safe_load((REPO_ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
    assert set(specs["argument_specs"]["main"]["options"]) == set(defaults)
    assert all(k.startswith(role + "_") for k in defaults)
    text = (REPO_ROOT / "roles" / role / "defaults/main.yml").read_text().splitlines()
    for i, line in enumerate(text):  # every default has a one-line comment above it
        if re.match(r"^[a-z0-9_]+:", line):
            assert text[i - 1].startswith("# "), line


def test_no_file_turns_off_kubelet_tls_verification():
    hits = []
    for top in ("roles", "playbooks", "templates", "labctl"):
        for path in (REPO_ROOT / top).rglob("*"):
            if path.is_file() and path.suffix not in (".pyc",) and INSECURE_FLAG in path.read_text(errors="ignore"):
                hits.append(str(path.relative_to(REPO_ROOT)))
    assert hits == []


def test_commands_use_the_roles_names():
    dd = yaml.safe_load((REPO_ROOT / "roles/dashboard/defaults/main.yml").read_text())
    assert (dd["dashboard_viewer_account"], dd["dashboard_admin_account"]) == (dashboard.VIEWER_ACCOUNT, dashboard.ADMIN_ACCOUNT)
    assert dd["dashboard_namespace"] == "{{ dashboard_ui }}"
    md = yaml.safe_load((REPO_ROOT / "roles/monitoring/defaults/main.yml").read_text())
    assert md["monitoring_grafana_password_file"].endswith("/secrets/" + grafana.PASSWORD_SECRET)


def test_dashboard_urls_and_token_command(tmp_path):
    assert dashboard.dashboard_url(lab_with()) == "http://192.168.56.21:30001/"
    assert dashboard.dashboard_url(lab_with("1.34", dashboard="kubernetes-dashboard", dashboard_nodeport=30442)) == \
        "https://192.168.56.21:30442/"
    assert dashboard.token_command(tmp_path / "kc", "labctl-viewer", "headlamp", "1h") == [
        "kubectl", "--kubeconfig", str(tmp_path / "kc"), "create", "token", "labctl-viewer", "-n", "headlamp",
        "--duration", "1h"]
    assert [dashboard.duration_seconds(d) for d in ("30s", "10m", "2h")] == [30, 600, 7200]
    for bad in ("1d", "0h", "h", "-1h", "1.5h"):
        with pytest.raises(ValueError):
            dashboard.duration_seconds(bad)
    assert grafana.grafana_url(lab_with(grafana_nodeport=30002)) == "http://192.168.56.21:30002/"


@pytest.mark.parametrize("args, addons, message", [
    (["dashboard"], {"dashboard": "none"}, "addons.dashboard is none"),
    (["dashboard", "--admin"], {}, "addons.dashboard_admin is false"),
    (["dashboard", "--duration", "3d"], {}, "expected a number and s, m or h"),
    (["dashboard", "--duration", "25h"], {}, "at most 24h"),
    (["dashboard"], {}, "kubeconfig does not exist yet"),
    (["grafana"], {"monitoring": "none"}, "addons.monitoring is none"),
    (["grafana", "--show-password"], {}, "does not exist yet"),
])
def test_commands_refuse_with_a_message(labdir, args, addons, message):
    data = base_lab()
    data["addons"].update(addons)
    lab = write_lab(labdir, data)
    proc = run_labctl(*args, "--lab", str(lab), cwd=labdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_grafana_prints_where_the_password_is_and_shows_it_only_when_asked(labdir):
    lab = write_lab(labdir, base_lab())
    secret = StateDir(lab, "k8s-lab").secret("grafana-admin-password")
    proc = run_labctl("grafana", "--lab", str(lab), cwd=labdir)
    assert proc.returncode == 0, proc.stderr
    assert "http://192.168.56.21:30002/" in proc.stdout and "user:     admin" in proc.stdout
    assert str(StateDir(lab, "k8s-lab").secret_path("grafana-admin-password")) in proc.stdout
    assert secret not in proc.stdout
    shown = run_labctl("grafana", "--show-password", "--lab", str(lab), cwd=labdir)
    assert shown.returncode == 0 and shown.stdout.strip().splitlines()[-1] == secret


def test_dashboard_url_only(labdir):
    lab = write_lab(labdir, base_lab())
    proc = run_labctl("dashboard", "--no-token", "--lab", str(lab), cwd=labdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("headlamp: http://192.168.56.21:30001/")


def test_addons_playbook_syntax():
    proc = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "inventory/example/hosts.yml", "playbooks/addons.yml"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
