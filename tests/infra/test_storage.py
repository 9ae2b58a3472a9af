"""Layer `storage`: the NFS export on the registry host (phase nfs) and the NFS client on every
Kubernetes node. The PersistentVolume round trip itself is a workload check (test_workloads.py).

In a container the kernel NFS server belongs to the host kernel: when the node offers no
`nfsd` filesystem, the checks that need a running server are skipped with that reason; the
configuration (packages, directory, exports file) is still checked.
"""

from __future__ import annotations

import pytest
from _check import check, expect, output
from _lab import facts, group_vars, node_host

EXPORTS_FILE = "/etc/exports.d/labctl.exports"
SERVER_PACKAGES = {"debian": "nfs-kernel-server", "ubuntu": "nfs-kernel-server"}  # else nfs-utils (EL)
CLIENT_PACKAGES = {"debian": "nfs-common", "ubuntu": "nfs-common"}


GV = group_vars()
NFS = facts().nfs
NFS_EXPORT = NFS.path
NODES = GV.get("lab_nodes", [])
SERVERS = [n["name"] for n in NODES if n["role"] == "registry"]
CLIENTS = [n["name"] for n in NODES if n["role"] in ("control-plane", "worker")]


def _nfsd_available(host) -> bool:
    return "nfsd" in host.file("/proc/filesystems").content_string.split()


def _need_server(host, node: str) -> None:
    if not _nfsd_available(host):
        virt = host.run("systemd-detect-virt --container").stdout.strip() or "this machine"
        pytest.skip(f"kernel NFS server unavailable on {node} ({virt}): the kernel offers no nfsd filesystem; "
                    "the export is configured, not served")


@pytest.mark.parametrize("node", SERVERS)
def test_server_package(node):
    host = node_host(node)
    pkg = SERVER_PACKAGES.get(host.system_info.distribution, "nfs-utils")
    expect(host.package(pkg).is_installed, True, f"package {pkg} installed", node=node)


@pytest.mark.parametrize("node", SERVERS)
def test_export_directory(node):
    f = node_host(node).file(NFS_EXPORT)
    found = f"directory {oct(f.mode)}" if f.is_directory else ("missing" if not f.exists else "not a directory")
    expect(found, "directory 0o755", f"exported directory {NFS_EXPORT}", node=node)


@pytest.mark.parametrize("node", SERVERS)
def test_exports_file(node):
    f = node_host(node).file(EXPORTS_FILE)
    want = f"{NFS_EXPORT} {NFS.clients}("
    lines = [ln for ln in (f.content_string.splitlines() if f.exists else []) if ln and not ln.startswith("#")]
    check(any(ln.startswith(want) for ln in lines), f"{EXPORTS_FILE} exports {NFS_EXPORT} to the node network",
          expected=f"{want}...)", found=lines or "(no such file)", node=node)


@pytest.mark.parametrize("node", SERVERS)
def test_server_running_and_exporting(node):
    host = node_host(node)
    _need_server(host, node)
    svc = host.service("nfs-server")
    expect(svc.is_running, True, "nfs-server running", node=node,
           detail=host.run("journalctl -u nfs-server -n 20 --no-pager").stdout)
    out = host.run("exportfs -v")
    check(NFS_EXPORT in out.stdout, f"{NFS_EXPORT} is exported", expected=NFS_EXPORT,
          found=out.stdout.strip() or "(nothing exported)", node=node, detail=output(out))


@pytest.mark.parametrize("node", CLIENTS)
def test_client_installed(node):
    host = node_host(node)
    pkg = CLIENT_PACKAGES.get(host.system_info.distribution, "nfs-utils")
    expect(host.package(pkg).is_installed, True, f"package {pkg} installed (kubelet mounts NFS volumes)", node=node)
    helper = host.file("/sbin/mount.nfs")
    expect(helper.exists, True, "/sbin/mount.nfs present", node=node)


@pytest.mark.parametrize("node", CLIENTS)
def test_export_visible_from_node(node):
    if not SERVERS:
        pytest.skip("no registry node")
    _need_server(node_host(SERVERS[0]), SERVERS[0])
    host = node_host(node)
    server = NFS.ip
    out = host.run("showmount -e %s", server)
    check(out.rc == 0 and NFS_EXPORT in out.stdout, f"the export of {SERVERS[0]} is visible", expected=NFS_EXPORT,
          found=out.stdout.strip() or out.stderr.strip(), node=node, detail=output(out))
