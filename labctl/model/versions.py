"""Pinned versions: which Kubernetes minors labctl knows, and what works with each.

One table, read by `labctl check` (what may be chosen), by the inventory
(group_vars carry the pins to the roles) and by `labctl images`.
Nothing here is fetched: a version not in this table is refused.
The versions themselves live in labctl/model/pins.yml (data only, shared with `labctl bundle build`);
this module gives them their types and the ranges that go with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PINS_FILE = Path(__file__).with_name("pins.yml")


def load_pins(path: Path = PINS_FILE) -> dict[str, Any]:
    """labctl/model/pins.yml as data."""
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


PINS = load_pins()

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


# The pins per minor (pins.yml `kubernetes`): pause/coredns/etcd are kubeadm's constants of
# that patch (cmd/kubeadm/app/constants/constants.go), what `kubeadm config images list` prints.
KUBERNETES: dict[str, KubernetesRelease] = {
    str(minor): KubernetesRelease(str(minor), str(p["patch"]), str(p["pause"]), str(p["coredns"]), str(p["etcd"]))
    for minor, p in PINS["kubernetes"].items()
}
DEFAULT_KUBERNETES = str(PINS["default_kubernetes"])

# containerd for the Kubernetes nodes: the 2.x minor series of the one containerd pin (pins.yml
# bundle.containerd, what the offline bundle builds), installed from Docker's containerd.io packages
# wherever the lab reaches download.docker.com (apt: containerd.io=<series>.*, held; dnf: the
# repository excludes containerd.io, installed as containerd.io-<series>.*). containerd's RELEASES.md
# support table recommends 2.x for current Kubernetes (1.6 LTS ended July 2025, 1.7 LTS March 2026),
# kubeadm's ContainerRuntimeVersionCheck warns about 1.x, and only 2.x answers the kubelet's
# RuntimeConfig (cgroup driver) call. Without a source for 2.x the distribution's package stays
# (Debian 12: 1.6, Ubuntu 24.04: 1.7) with a warning naming the pair.
CONTAINERD_SERIES = ".".join(str(PINS["bundle"]["containerd"]["version"]).lstrip("v").split(".")[:2])


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
_ADDON_PINS = {k: str(v) for k, v in PINS["addons"].items()}
ADDONS: dict[str, AddonRelease] = {
    a.name: a
    for a in (
        # flannel v0.27.4 ships with flannel-cni-plugin v1.8.0-flannel1 (its kube-flannel.yml)
        AddonRelease("flannel", _ADDON_PINS["flannel"], "1.28", "1.37",
                     images=(f"ghcr.io/flannel-io/flannel:{_ADDON_PINS['flannel']}",
                             f"ghcr.io/flannel-io/flannel-cni-plugin:{_ADDON_PINS['flannel_cni_plugin']}")),
        # Chart pins, checked against the charts' releases (search tool, Nov 2026). The images each
        # pin runs are listed in the addon roles' vars/main.yml (labctl/model/addon_images.py reads them),
        # the value keys labctl sets in labctl/model/charts/<chart>.yml.
        # traefik chart 37.4.0 (Nov 2025, Traefik Proxy v3.6): Chart.yaml kubeVersion >=1.22.
        AddonRelease("traefik", _ADDON_PINS["traefik"], "1.22", "1.37"),
        # ingress-nginx chart 4.15.1 = controller v1.15.1, the last release before the retirement.
        AddonRelease(
            "ingress-nginx",
            _ADDON_PINS["ingress-nginx"],
            "1.30",
            "1.35",
            retired="ingress-nginx was retired upstream in March 2026 (last release "
            "controller v1.15.1 / chart 4.15.1); prefer addons.ingress: traefik",
        ),
        # metrics-server chart 3.13.0 = metrics-server v0.8.0 (Jul 2025).
        AddonRelease("metrics-server", _ADDON_PINS["metrics-server"], "1.19", "1.37"),
        # headlamp chart 0.38.0 = Headlamp v0.38.0.
        AddonRelease("headlamp", _ADDON_PINS["headlamp"], "1.24", "1.37"),
        # kubernetes-dashboard chart 7.14.0 (Oct 2025): the last chart (api 1.14.0, auth 1.4.0).
        AddonRelease(
            "kubernetes-dashboard",
            _ADDON_PINS["kubernetes-dashboard"],
            "1.27",
            "1.34",
            retired="the Kubernetes Dashboard was archived in January 2026; "
            "prefer addons.dashboard: headlamp",
        ),
        # kube-prometheus-stack chart 79.5.0 (Nov 2025).
        AddonRelease("kube-prometheus-stack", _ADDON_PINS["kube-prometheus-stack"], "1.25", "1.37"),
        # Helm 3.19.2: Helm's version-skew table lists 3.19.x for Kubernetes 1.34-1.31 and calls
        # newer clusters "at your own risk"; labctl uses only `helm upgrade --install`, `list` and
        # `get values` with charts of stable APIs on 1.35-1.37. A Helm 4 pin (with per-arch sha256
        # in roles/helm/vars/main.yml) would bring the documented range up to date.
        AddonRelease("helm", _ADDON_PINS["helm"], "1.31", "1.37"),
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
