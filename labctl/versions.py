"""Pinned versions: which Kubernetes minors labctl knows, and what works with each.

One table, read by `labctl check` (what may be chosen), by the inventory
(group_vars carry the pins to the roles) and by `labctl images`.
Nothing here is fetched: a version not in this table is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# kubeadm's v1beta4 configuration API is served from 1.31 on.
KUBEADM_V1BETA4_SINCE = (1, 31)
# kube-proxy's ipvs mode: deprecated in 1.35 (KEP-5495), its feature gate
# KubeProxyIPVS is planned to be disabled by default in 1.40.
IPVS_DEPRECATED_SINCE = (1, 35)
IPVS_REMOVED_SINCE = (1, 40)
# kubeadm's own preflight minimum for a control-plane node.
CONTROL_PLANE_MIN_CPUS = 2
CONTROL_PLANE_MIN_MEMORY_MB = 1700


@dataclass(frozen=True)
class KubernetesRelease:
    """What kubeadm uses for one minor (see `kubeadm config images list`)."""

    minor: str  # "1.37"
    patch: str  # the pinned patch release, "1.37.2"
    pause: str  # sandbox image tag kubeadm expects
    coredns: str  # CoreDNS image tag
    etcd: str  # etcd image tag


# The pins per minor. `kubeadm config images list --kubernetes-version vX`
# is the source of truth for pause/coredns/etcd.
KUBERNETES: dict[str, KubernetesRelease] = {
    r.minor: r
    for r in (
        KubernetesRelease("1.31", "1.31.14", "3.10", "v1.11.3", "3.5.24-0"),
        KubernetesRelease("1.32", "1.32.13", "3.10", "v1.11.3", "3.5.24-0"),
        KubernetesRelease("1.33", "1.33.9", "3.10", "v1.12.0", "3.5.24-0"),
        KubernetesRelease("1.34", "1.34.5", "3.10.1", "v1.12.1", "3.6.5-0"),
        KubernetesRelease("1.35", "1.35.2", "3.10.1", "v1.13.1", "3.6.6-0"),
        KubernetesRelease("1.36", "1.36.1", "3.10.1", "v1.13.1", "3.6.6-0"),
        KubernetesRelease("1.37", "1.37.0", "3.10.1", "v1.13.1", "3.6.6-0"),
    )
}
DEFAULT_KUBERNETES = "1.37"


@dataclass(frozen=True)
class AddonRelease:
    """A pinned addon release and the Kubernetes minors it is known to work with."""

    name: str  # the lab.yml value, e.g. "traefik"
    version: str  # chart or manifest version labctl installs
    min_minor: str  # oldest Kubernetes minor it supports
    max_minor: str  # newest Kubernetes minor it is known to work with
    retired: str = ""  # a notice printed when the addon is chosen
    images: tuple[str, ...] = field(default=())  # upstream images (mirrored)


# Keyed by the addons.<kind> value in lab.yml.
ADDONS: dict[str, AddonRelease] = {
    a.name: a
    for a in (
        # flannel v0.27.4 ships with flannel-cni-plugin v1.8.0-flannel1 (its kube-flannel.yml)
        AddonRelease("flannel", "v0.27.4", "1.28", "1.37",
                     images=("ghcr.io/flannel-io/flannel:v0.27.4",
                             "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1")),
        AddonRelease("traefik", "37.4.0", "1.22", "1.37"),
        AddonRelease(
            "ingress-nginx",
            "4.15.1",
            "1.30",
            "1.35",
            retired="ingress-nginx was retired upstream in March 2026 (last release "
            "controller v1.15.1 / chart 4.15.1); prefer addons.ingress: traefik",
        ),
        AddonRelease("metrics-server", "3.13.0", "1.19", "1.37"),
        AddonRelease("headlamp", "0.38.0", "1.24", "1.37"),
        AddonRelease(
            "kubernetes-dashboard",
            "7.14.0",
            "1.27",
            "1.34",
            retired="the Kubernetes Dashboard was archived in January 2026; "
            "prefer addons.dashboard: headlamp",
        ),
        AddonRelease("kube-prometheus-stack", "79.5.0", "1.25", "1.37"),
        AddonRelease("helm", "3.19.2", "1.30", "1.37"),
    )
}


def minor_tuple(version: str) -> tuple[int, int]:
    """'1.37' or '1.37.2' -> (1, 37)."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def known_minors() -> list[str]:
    return sorted(KUBERNETES, key=minor_tuple)


def addon_supports(addon: str, minor: str) -> bool:
    rel = ADDONS[addon]
    return minor_tuple(rel.min_minor) <= minor_tuple(minor) <= minor_tuple(rel.max_minor)
