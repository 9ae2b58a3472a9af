"""The ports each lab host already serves: the one table `labctl check` holds a lab's ports against.

A port lab.yml sets (registry.port, nodes[].ssh_port) must not be one a service on the
same host listens on. Which services run on a host follows from its role: every node runs
sshd; the registry host also runs the NFS server (roles/nfs: nfsd and rpcbind; mountd,
statd and lockd take ports rpcbind assigns, so none is pinned); Kubernetes nodes run the
kubelet and kube-proxy and serve the NodePort range, control planes also the API server,
etcd, the controller manager and the scheduler (kubeadm's defaults, bound by
roles/kubeadm_init). Only TCP is listed: every port lab.yml sets is a TCP port.
"""

from __future__ import annotations

from dataclasses import dataclass

K8S_ROLES = ("control-plane", "worker")


@dataclass(frozen=True)
class Served:
    first: int
    last: int
    what: str
    roles: tuple[str, ...]  # the node roles whose hosts serve it
    addon: str = ""  # served only when this addons.<key> is not "none"

    def __contains__(self, port: int) -> bool:
        return self.first <= port <= self.last

    @property
    def ports(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def __str__(self) -> str:
        return f"{self.ports} ({self.what})"


# sshd is not here: it listens on the node's own ssh port (see served_on).
SERVED: tuple[Served, ...] = (
    Served(111, 111, "rpcbind, for NFS", ("registry",)),
    Served(2049, 2049, "the NFS server", ("registry",)),
    Served(2379, 2380, "etcd", ("control-plane",)),
    Served(2381, 2381, "etcd metrics", ("control-plane",)),
    Served(6443, 6443, "the Kubernetes API server", ("control-plane",)),
    Served(9100, 9100, "node-exporter", K8S_ROLES, addon="monitoring"),
    Served(10248, 10248, "the kubelet health check", K8S_ROLES),
    Served(10249, 10249, "kube-proxy metrics", K8S_ROLES),
    Served(10250, 10250, "the kubelet API", K8S_ROLES),
    Served(10256, 10256, "kube-proxy health", K8S_ROLES),
    Served(10257, 10257, "kube-controller-manager", ("control-plane",)),
    Served(10259, 10259, "kube-scheduler", ("control-plane",)),
    Served(30000, 32767, "the NodePort range", K8S_ROLES),
)


def served_on(role: str, ssh_port: int, addons: dict[str, object]) -> list[Served]:
    """What a host of `role` serves, sshd on `ssh_port` included; `addons` is the lab's addons section."""
    out = [Served(ssh_port, ssh_port, "sshd", ())]
    out += [s for s in SERVED if role in s.roles and (not s.addon or addons.get(s.addon) != "none")]
    return sorted(out, key=lambda s: s.first)
