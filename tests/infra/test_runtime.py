"""Layer `runtime` (phase runtime): containerd on every Kubernetes node, docker on the
registry host (docs/course.md §2).

The checks read what containerd actually loaded (`containerd config dump`), not only the
file: Debian's packaged config.toml has no SystemdCgroup line, so a file that is never read
would pass a file-only check.

Every check here only reads: they read the node's snapshot (`snap`, `snapshots[node]`,
_snapshot.py), whose commands `snapshot_reads` lists; evidence (journal lines) is read live,
only when a check fails.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from _check import check, expect, output
from _lab import facts, group_vars, node_host
from _snapshot import command_v, file_reads, service_reads

testinfra_hosts = ["ansible://k8s_cluster"]


GV = group_vars()
FACTS = facts()
REGISTRY = FACTS.registry.address  # "" without a registry node
REGISTRY_NODES = [n["name"] for n in GV.get("lab_nodes", []) if n["role"] == "registry"]
CERTS_DIR = "/etc/containerd/certs.d"


def _sandbox_image() -> str:
    return f"{FACTS.mirror.sandbox_image_repository}/pause:{FACTS.versions.pause}"


def _cri(config: dict) -> tuple[dict, dict, dict]:
    """(runc options, images/registry section, sandbox holder) of a config, schema 2 or 3."""
    plugins = config.get("plugins", {})
    # containerd 2.x also lists io.containerd.grpc.v1.cri (the CRI service, no settings of these):
    # the version-3 plugin ids decide (seen on containerd 2.3.7, whose dump says version = 4)
    if "io.containerd.cri.v1.runtime" not in plugins:  # version 2 (containerd 1.x)
        cri = plugins["io.containerd.grpc.v1.cri"]
        runc = cri.get("containerd", {}).get("runtimes", {}).get("runc", {}).get("options", {})
        return runc, cri.get("registry", {}), {"sandbox": cri.get("sandbox_image")}
    images = plugins.get("io.containerd.cri.v1.images", {})  # version 3 (containerd 2.x)
    runtime = plugins.get("io.containerd.cri.v1.runtime", {})
    runc = runtime.get("containerd", {}).get("runtimes", {}).get("runc", {}).get("options", {})
    return runc, images.get("registry", {}), {"sandbox": images.get("pinned_images", {}).get("sandbox")}


def snapshot_reads(node: dict) -> list[str]:
    """The commands the checks below run, per node (read once, _snapshot.py)."""
    if node["role"] == "registry":
        return [*service_reads("docker"), "docker info --format '{{.CgroupDriver}}'",
                *file_reads(f"/etc/docker/certs.d/{REGISTRY}/ca.crt", "exists", "content")]
    reads = [*service_reads("containerd"), *file_reads("/etc/containerd/config.toml", "mode", "content"),
             "containerd config dump", *file_reads("/etc/crictl.yaml", "exists", "content"), "ctr version",
             *command_v("crictl"), "crictl info"]
    if REGISTRY:  # the ca path is hosts.toml's; the runtime role writes this one
        reads += [*file_reads(f"{CERTS_DIR}/{REGISTRY}/hosts.toml", "exists", "content"),
                  *file_reads(f"{CERTS_DIR}/{REGISTRY}/ca.crt")]
    return reads


def _journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 20 --no-pager -o cat").stdout


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return (Path(GV["lab_state_dir"]) / "ca.crt").read_text().strip()


def test_containerd_running(host, snap):
    svc = snap.service("containerd")
    check(svc.is_running and svc.is_enabled, "containerd runs and starts at boot", expected="active, enabled",
          found=lambda: host.run("systemctl is-active containerd; systemctl is-enabled containerd").stdout.split(),
          detail=lambda: _journal(host, "containerd"))


def test_containerd_config_file(snap):
    f = snap.file("/etc/containerd/config.toml")
    expect(f.mode, 0o600, "config.toml is readable by root only")
    cfg = tomllib.loads(f.content_string)
    runc, registry, sandbox = _cri(cfg)
    expect(runc.get("SystemdCgroup"), True, "config.toml sets SystemdCgroup = true")
    expect(sandbox["sandbox"], _sandbox_image(), "config.toml pins the sandbox (pause) image kubeadm uses")
    expect(registry.get("config_path"), CERTS_DIR, "config.toml points config_path at the hosts directory")


def test_containerd_loaded_config(snap):
    """What containerd runs with: proves the file above is the one it reads."""
    out = snap.run("containerd config dump")
    expect(out.rc, 0, "containerd config dump works", detail=output(out))
    runc, registry, sandbox = _cri(tomllib.loads(out.stdout))
    expect(runc.get("SystemdCgroup"), True, "containerd runs runc with the systemd cgroup driver")
    expect(sandbox["sandbox"], _sandbox_image(), "containerd uses the pinned sandbox image")
    expect(registry.get("config_path"), CERTS_DIR, "containerd reads registry hosts from the hosts directory")
    if REGISTRY:
        # credentials live where the kubelet asks (/var/lib/kubelet/config.json, 0600; test_registry pulls
        # with them), not in containerd's deprecated registry.configs
        auth = registry.get("configs", {}).get(REGISTRY, {}).get("auth")
        expect(auth, None, f"containerd's loaded config holds no credentials for {REGISTRY}")


def test_registry_hosts_toml(snap, ca_pem):
    if not REGISTRY:
        pytest.skip("no registry node in lab.yml: nothing to trust")
    path = f"{CERTS_DIR}/{REGISTRY}/hosts.toml"
    f = snap.file(path)
    check(f.exists, f"{path} exists", expected="a file", found="missing")
    hosts = tomllib.loads(f.content_string)
    expect(hosts.get("server"), f"https://{REGISTRY}", "hosts.toml names the registry over https", detail=f.content_string)
    entry = hosts.get("host", {}).get(f"https://{REGISTRY}", {})
    ca_path = entry.get("ca")
    check(ca_path, "hosts.toml trusts a CA for the registry", expected="ca = <path>", found=entry,
          detail=f.content_string)
    expect(snap.file(ca_path).content_string.strip(), ca_pem, f"{ca_path} is the lab CA")


def test_crictl_config(snap):
    f = snap.file("/etc/crictl.yaml")
    check(f.exists, "/etc/crictl.yaml exists", expected="a file", found="missing")
    cfg = yaml.safe_load(f.content_string)
    expect(cfg.get("runtime-endpoint"), "unix:///run/containerd/containerd.sock", "crictl talks to containerd",
           detail=f.content_string)


def test_ctr_talks_to_containerd(snap):
    out = snap.run("ctr version")
    check(out.rc == 0 and "Server:" in out.stdout, "ctr reaches the containerd daemon", expected="a Server version",
          found=out.stdout.strip().splitlines()[-1:] or out.stderr.strip(), detail=output(out))


def test_crictl_works(snap):
    if not snap.exists("crictl"):
        pytest.skip("crictl is not installed yet: it comes with the Kubernetes packages (cri-tools, phase packages)")
    out = snap.run("crictl info")
    expect(out.rc, 0, "crictl info answers through the CRI socket", detail=output(out))
    cfg = json.loads(out.stdout).get("config", {})
    if "sandboxImage" in cfg:  # containerd 1.x; 2.x's `crictl info` no longer reports it (pinned_images.sandbox
        # in the images plugin: test_containerd_loaded_config checks it in what containerd loaded)
        expect(cfg.get("sandboxImage"), _sandbox_image(), "the CRI plugin reports the pinned sandbox image")


# -- docker on the registry host -------------------------------------------------------------------------

@pytest.mark.parametrize("node", REGISTRY_NODES)
def test_docker_systemd_cgroup_driver(node, snapshots):
    reg = snapshots[node]
    svc = reg.service("docker")
    check(svc.is_running and svc.is_enabled, "docker runs and starts at boot", expected="active, enabled",
          found=lambda: node_host(node).run("systemctl is-active docker; systemctl is-enabled docker").stdout.split(),
          node=node, detail=lambda: _journal(node_host(node), "docker"))
    out = reg.run("docker info --format '{{.CgroupDriver}}'")
    expect(out.stdout.strip(), "systemd", "docker info shows the systemd cgroup driver", node=node, detail=output(out))


@pytest.mark.parametrize("node", REGISTRY_NODES)
def test_docker_trusts_registry(node, ca_pem, snapshots):
    reg = snapshots[node]
    path = f"/etc/docker/certs.d/{REGISTRY}/ca.crt"
    f = reg.file(path)
    check(f.exists, f"{path} exists", expected="the lab CA", found="missing", node=node)
    expect(f.content_string.strip(), ca_pem, f"{path} is the lab CA", node=node)
