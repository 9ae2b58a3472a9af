"""Layer `runtime` (phase runtime): containerd on every Kubernetes node, docker on the
registry host (lab-reference §2).

The checks read what containerd actually loaded (`containerd config dump`), not only the
file: Debian's packaged config.toml has no SystemdCgroup line, so a file that is never read
would pass a file-only check.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from _check import check, expect, output
from _lab import group_vars, node_host

testinfra_hosts = ["ansible://k8s_cluster"]


GV = group_vars()
REGISTRY = GV.get("lab_registry_address", "") if GV.get("lab_registry_enabled") else ""
REGISTRY_NODES = [n["name"] for n in GV.get("lab_nodes", []) if n["role"] == "registry"]
CERTS_DIR = "/etc/containerd/certs.d"


def _sandbox_image() -> str:
    repo = REGISTRY if (GV.get("lab_mirror_images") and REGISTRY) else "registry.k8s.io"
    return f"{repo}/pause:{GV.get('lab_pause_version')}"


def _cri(config: dict) -> tuple[dict, dict, dict]:
    """(runc options, images/registry section, sandbox holder) of a config, schema 2 or 3."""
    plugins = config.get("plugins", {})
    if "io.containerd.grpc.v1.cri" in plugins:  # version 2 (containerd 1.x)
        cri = plugins["io.containerd.grpc.v1.cri"]
        runc = cri.get("containerd", {}).get("runtimes", {}).get("runc", {}).get("options", {})
        return runc, cri.get("registry", {}), {"sandbox": cri.get("sandbox_image")}
    images = plugins.get("io.containerd.cri.v1.images", {})  # version 3 (containerd 2.x)
    runtime = plugins.get("io.containerd.cri.v1.runtime", {})
    runc = runtime.get("containerd", {}).get("runtimes", {}).get("runc", {}).get("options", {})
    return runc, images.get("registry", {}), {"sandbox": images.get("pinned_images", {}).get("sandbox")}


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return (Path(GV["lab_state_dir"]) / "ca.crt").read_text().strip()


def test_containerd_running(host):
    svc = host.service("containerd")
    check(svc.is_running and svc.is_enabled, "containerd runs and starts at boot", expected="active, enabled",
          found=host.run("systemctl is-active containerd; systemctl is-enabled containerd").stdout.split(),
          detail=host.run("journalctl -u containerd -n 20 --no-pager -o cat").stdout)


def test_containerd_config_file(host):
    f = host.file("/etc/containerd/config.toml")
    expect(f.mode, 0o600, "config.toml is readable by root only (it holds the registry password)")
    cfg = tomllib.loads(f.content_string)
    runc, registry, sandbox = _cri(cfg)
    expect(runc.get("SystemdCgroup"), True, "config.toml sets SystemdCgroup = true")
    expect(sandbox["sandbox"], _sandbox_image(), "config.toml pins the sandbox (pause) image kubeadm uses")
    expect(registry.get("config_path"), CERTS_DIR, "config.toml points config_path at the hosts directory")


def test_containerd_loaded_config(host):
    """What containerd runs with: proves the file above is the one it reads."""
    out = host.run("containerd config dump")
    expect(out.rc, 0, "containerd config dump works", detail=output(out))
    runc, registry, sandbox = _cri(tomllib.loads(out.stdout))
    expect(runc.get("SystemdCgroup"), True, "containerd runs runc with the systemd cgroup driver")
    expect(sandbox["sandbox"], _sandbox_image(), "containerd uses the pinned sandbox image")
    expect(registry.get("config_path"), CERTS_DIR, "containerd reads registry hosts from the hosts directory")
    if REGISTRY and GV.get("lab_registry_auth"):
        auth = registry.get("configs", {}).get(REGISTRY, {}).get("auth", {})
        expect(auth.get("username"), GV.get("lab_registry_user"), f"containerd has credentials for {REGISTRY}")


def test_registry_hosts_toml(host, ca_pem):
    if not REGISTRY:
        pytest.skip("no registry node in lab.yml: nothing to trust")
    path = f"{CERTS_DIR}/{REGISTRY}/hosts.toml"
    f = host.file(path)
    check(f.exists, f"{path} exists", expected="a file", found="missing")
    hosts = tomllib.loads(f.content_string)
    expect(hosts.get("server"), f"https://{REGISTRY}", "hosts.toml names the registry over https", detail=f.content_string)
    entry = hosts.get("host", {}).get(f"https://{REGISTRY}", {})
    ca_path = entry.get("ca")
    check(ca_path, "hosts.toml trusts a CA for the registry", expected="ca = <path>", found=entry,
          detail=f.content_string)
    expect(host.file(ca_path).content_string.strip(), ca_pem, f"{ca_path} is the lab CA")


def test_crictl_config(host):
    f = host.file("/etc/crictl.yaml")
    check(f.exists, "/etc/crictl.yaml exists", expected="a file", found="missing")
    cfg = yaml.safe_load(f.content_string)
    expect(cfg.get("runtime-endpoint"), "unix:///run/containerd/containerd.sock", "crictl talks to containerd",
           detail=f.content_string)


def test_ctr_talks_to_containerd(host):
    out = host.run("ctr version")
    check(out.rc == 0 and "Server:" in out.stdout, "ctr reaches the containerd daemon", expected="a Server version",
          found=out.stdout.strip().splitlines()[-1:] or out.stderr.strip(), detail=output(out))


def test_crictl_works(host):
    if not host.exists("crictl"):
        pytest.skip("crictl is not installed yet: it comes with the Kubernetes packages (cri-tools, phase packages)")
    out = host.run("crictl info")
    expect(out.rc, 0, "crictl info answers through the CRI socket", detail=output(out))
    cfg = json.loads(out.stdout).get("config", {})
    expect(cfg.get("sandboxImage"), _sandbox_image(), "the CRI plugin reports the pinned sandbox image")


# -- docker on the registry host -------------------------------------------------------------------------

@pytest.mark.parametrize("node", REGISTRY_NODES)
def test_docker_systemd_cgroup_driver(node):
    reg = node_host(node)
    svc = reg.service("docker")
    check(svc.is_running and svc.is_enabled, "docker runs and starts at boot", expected="active, enabled",
          found=reg.run("systemctl is-active docker; systemctl is-enabled docker").stdout.split(), node=node,
          detail=reg.run("journalctl -u docker -n 20 --no-pager -o cat").stdout)
    out = reg.run("docker info --format '{{.CgroupDriver}}'")
    expect(out.stdout.strip(), "systemd", "docker info shows the systemd cgroup driver", node=node, detail=output(out))


@pytest.mark.parametrize("node", REGISTRY_NODES)
def test_docker_trusts_registry(node, ca_pem):
    reg = node_host(node)
    path = f"/etc/docker/certs.d/{REGISTRY}/ca.crt"
    f = reg.file(path)
    check(f.exists, f"{path} exists", expected="the lab CA", found="missing", node=node)
    expect(f.content_string.strip(), ca_pem, f"{path} is the lab CA", node=node)
