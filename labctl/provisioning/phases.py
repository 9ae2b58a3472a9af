"""The provisioning phases, in order. Each is a playbook (playbooks/<phase>.yml) and a tag."""

from __future__ import annotations

from labctl.errors import UserError

PHASES: tuple[str, ...] = (
    "host",           # base, firewall, selinux, swap, kernel, lab CA trust
    "runtime",        # containerd on Kubernetes nodes, docker on the registry host
    "registry",       # the private registry (TLS, htpasswd)
    "nfs",            # NFS export on the registry host for PersistentVolumes
    "packages",       # kubeadm, kubelet, kubectl (pkgs.k8s.io or packages_dir)
    "images",         # mirror every image the lab needs into the registry
    "control-plane",  # kubeadm init
    "join",           # kubeadm join
    "network",        # flannel
    "addons",         # helm, ingress, metrics-server, web UI, monitoring
)

# The phases that need a running kubelet on the Kubernetes nodes.
KUBELET_PHASES: tuple[str, ...] = ("control-plane", "join", "network", "addons")

# The verify layers, in report order (labctl/verify/run.py decides from the lab's state which can run).
LAYERS: tuple[str, ...] = ("host", "runtime", "registry", "storage", "control-plane", "network", "addons", "workloads")


def select(phase: str | None, until: str | None) -> list[str]:
    """The phases a run covers: --phase a,b or --until x (all before x and x)."""
    if phase and until:
        raise UserError("--phase and --until: give one or the other")
    if phase:
        chosen = [p.strip() for p in phase.split(",") if p.strip()]
        bad = [p for p in chosen if p not in PHASES]
        if bad:
            raise UserError(f"--phase: unknown phase(s) {', '.join(bad)}; allowed: {', '.join(PHASES)}")
        return [p for p in PHASES if p in chosen]
    if until:
        if until not in PHASES:
            raise UserError(f"--until: unknown phase {until!r}; allowed: {', '.join(PHASES)}")
        return list(PHASES[: PHASES.index(until) + 1])
    return list(PHASES)
