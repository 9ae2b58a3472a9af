"""Every container image a lab needs, and its name in the lab registry.

Source of truth for `labctl images` and the images phase. The naming rule:
- images kubeadm pulls (control plane, kube-proxy, pause, CoreDNS, etcd) are
  mirrored as `<registry>/<name>:<tag>`, because with a custom
  `imageRepository` kubeadm asks for `<imageRepository>/<name>:<tag>`
  (CoreDNS too: `registry.k8s.io/coredns/coredns` becomes `<registry>/coredns`);
- every other image keeps its path without the upstream host:
  `ghcr.io/flannel-io/flannel:v0.27.4` -> `<registry>/flannel-io/flannel:v0.27.4`.
"""

from __future__ import annotations

from labctl.model import addon_images, versions
from labctl.model.config import Lab
from labctl.model.facts import UPSTREAM_K8S, Image, kubernetes_patch, mirror_registry
from labctl.verify.workloads import WORKLOAD_IMAGES

__all__ = ["CSR_APPROVER", "UPSTREAM_K8S", "Image", "csr_approver_image", "csr_approver_unavailable", "lab_images",
           "mirror_name", "split_ref"]

# labctl's own image of the in-cluster kubelet serving CSR approver (roles/csr_approver): Debian bookworm with
# python3, built by `labctl bundle build` (labctl/model/pins.yml bundle.csr_approver); no public registry has it.
CSR_APPROVER = f"docker.io/labctl/csr-approver:{versions.PINS['bundle']['csr_approver']['version']}"
KUBEADM_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


def split_ref(ref: str) -> tuple[str, str, str]:
    """'ghcr.io/a/b:v1' -> ('ghcr.io', 'a/b', 'v1'); a reference without a host is docker.io."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, "latest"
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name if "/" in name else f"library/{name}"
    return host, path, tag


def kubeadm_images(lab: Lab) -> list[str]:
    """What `kubeadm config images list --kubernetes-version v<patch>` prints for the lab's pins."""
    rel = versions.KUBERNETES[lab.kubernetes.minor]
    patch = kubernetes_patch(lab.kubernetes)
    out = [f"{UPSTREAM_K8S}/{c}:v{patch}" for c in KUBEADM_COMPONENTS]
    out += [f"{UPSTREAM_K8S}/coredns/coredns:{rel.coredns}",
            f"{UPSTREAM_K8S}/pause:{rel.pause}",
            f"{UPSTREAM_K8S}/etcd:{rel.etcd}"]
    return out


def mirror_name(source: str, registry: str, group: str) -> str:
    _host, path, tag = split_ref(source)
    if group == "kubeadm":
        path = path.rsplit("/", 1)[-1]
    return f"{registry}/{path}:{tag}"


def lab_images(lab: Lab) -> list[Image]:
    """Every image the lab pulls, in a stable order, without duplicates."""
    registry = mirror_registry(lab)
    wanted: list[tuple[str, str]] = [(ref, "kubeadm") for ref in kubeadm_images(lab)]
    wanted += [(ref, "cni") for ref in versions.ADDONS[lab.addons.cni].images]
    wanted += [(ref, "addons") for ref in addon_images.images(lab)]
    # the kubelet serving CSR approver the network phase deploys, when the lab can have its image
    if not csr_approver_unavailable(lab):
        wanted += [(CSR_APPROVER, "network")]
    # what `labctl verify`'s workload checks run (agnhost for the whoami pods, busybox)
    wanted += [(ref, "workloads") for ref in WORKLOAD_IMAGES.values()]
    seen: set[str] = set()
    out: list[Image] = []
    for ref, group in wanted:
        if ref in seen:
            continue
        seen.add(ref)
        out.append(Image(ref, mirror_name(ref, registry, group) if registry else "", group))
    return out


def csr_approver_unavailable(lab: Lab) -> str:
    """Why the lab cannot run the in-cluster CSR approver ("" when it can).

    Its image (CSR_APPROVER) exists only in an offline bundle built with it, and reaches the nodes only
    through the lab registry. Without it the join phase's approval at provision time remains.
    """
    if not mirror_registry(lab):
        return f"its image {CSR_APPROVER} comes only through the lab registry (kubernetes.mirror_images and a registry node)"
    if not lab.kubernetes.bundle:
        return (f"its image {CSR_APPROVER} is labctl's own, built only into an offline bundle "
                "(`labctl bundle build`, kubernetes.bundle)")
    from labctl.bundle import manifest as bundle_manifest

    if CSR_APPROVER not in bundle_manifest.read(lab.kubernetes.bundle).images:
        return f"the offline bundle {lab.kubernetes.bundle} has no {CSR_APPROVER}; rebuild it with `labctl bundle build`"
    return ""


def csr_approver_image(lab: Lab) -> str:
    """The approver's image as the nodes pull it: its name in the lab registry (the source without one)."""
    registry = mirror_registry(lab)
    return mirror_name(CSR_APPROVER, registry, "network") if registry else CSR_APPROVER
