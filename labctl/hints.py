"""Known causes of failed checks -> a hint a person can act on.

Each rule looks at the text of one failed check (its layer, name, what/expected/found,
evidence and pytest's message, lowercased) and, for some rules, at the lab's group_vars
(`ctx`: lab_pod_subnet, lab_firewall, ...). The first rule that matches gives the hint.
Rules are ordered from the most specific cause to the most generic one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labctl.facts import LabFacts, Registry

if TYPE_CHECKING:
    from labctl.report import Check


@dataclass(frozen=True)
class Rule:
    key: str
    match: Callable[[str, Check, dict[str, Any]], bool]
    text: Callable[[Check, dict[str, Any]], str]


def _has(*words: str) -> Callable[[str, Check, dict[str, Any]], bool]:
    """Every word (a regex) occurs in the check's text."""
    pats = [re.compile(w) for w in words]
    return lambda hay, c, ctx: all(p.search(hay) for p in pats)


def _any(*words: str) -> Callable[[str, Check, dict[str, Any]], bool]:
    pats = [re.compile(w) for w in words]
    return lambda hay, c, ctx: any(p.search(hay) for p in pats)


def _found(*words: str) -> Callable[[str, Check, dict[str, Any]], bool]:
    """A word occurs in what was FOUND (found, evidence, error), not in what was expected."""
    pats = [re.compile(w) for w in words]

    def match(hay: str, c: Check, ctx: dict[str, Any]) -> bool:
        if c.what:  # an expect()/check() failure: its message repeats `expected`, so leave it out
            text = "\n".join((c.found, c.detail))
        else:
            text = "\n".join([c.message] + [ln for ln in c.longrepr.splitlines() if ln.startswith("E ")])
        return any(p.search(text.lower()) for p in pats)
    return match


def _both(a: Callable[..., bool], b: Callable[..., bool]) -> Callable[[str, Check, dict[str, Any]], bool]:
    return lambda hay, c, ctx: a(hay, c, ctx) and b(hay, c, ctx)


def _firewall_ports(hay: str, c: Check, ctx: dict[str, Any]) -> bool:
    return ctx.get("lab_firewall") == "ports"


def _registry(ctx: dict[str, Any]) -> Registry:
    return LabFacts.from_group_vars(ctx).registry


def _registry_addr(ctx: dict[str, Any]) -> str:
    return _registry(ctx).address or "the registry"


def _registry_host(ctx: dict[str, Any]) -> str:
    return _registry(ctx).name or "the registry host"


RULES: tuple[Rule, ...] = (
    Rule("flannel-pod-subnet",
         _both(_has("notready|not ready"), _has("flannel")),
         lambda c, ctx: (f"a node is NotReady while flannel crash-loops: compare kubernetes.pod_subnet "
                         f"({ctx.get('lab_pod_subnet', '?')}) with flannel's net-conf.json \"Network\" "
                         "(kubectl -n kube-flannel get cm kube-flannel-cfg -o yaml) and the podCIDR of the node "
                         "(kubectl get node -o jsonpath='{.items[*].spec.podCIDR}'); they must agree")),
    Rule("flannel-crashloop",
         _has("flannel", "crashloopbackoff|crash"),
         lambda c, ctx: ("flannel is crash-looping: kubectl -n kube-flannel logs ds/kube-flannel-ds; the usual cause is "
                         f"a pod_subnet ({ctx.get('lab_pod_subnet', '?')}) different from flannel's Network, or "
                         "br_netfilter not loaded")),
    Rule("metrics-503",
         _both(_any("metrics", "top node", "top pod", "hpa", "horizontalpodautoscaler"),
               _any(r"\b503\b", "serviceunavailable", "service unavailable", "metrics api not available",
                    "metrics not available", "failedgetresourcemetric", "unable to get metrics")),
         lambda c, ctx: ("the metrics API is not serving: look for pending kubelet-serving CSRs "
                         "(kubectl get csr | grep Pending; kubectl certificate approve <name>) -- kubelets need "
                         "serverTLSBootstrap: true and their serving certificates approved; then "
                         "kubectl -n kube-system logs deploy/metrics-server")),
    Rule("nodeport-firewall",
         _both(_firewall_ports, _both(_any("nodeport", r"\b3[0-2]\d{3}\b"),
                                      _any("refused", "timed out", "timeout", "no route", "unreachable", "unanswered"))),
         lambda c, ctx: ("host.firewall is 'ports': NodePorts need 30000-32767/tcp+udp open on every node "
                         "(firewall-cmd --list-ports; the firewall role's port list), plus 8472/udp for flannel "
                         "and cni0/flannel.1 in the trusted zone")),
    Rule("nodeport-unanswered",
         _both(_any("nodeport", "ingress"), _any("refused", "timed out", "timeout", "no route", "unanswered")),
         lambda c, ctx: ("a NodePort did not answer: check kube-proxy on that node "
                         "(kubectl -n kube-system logs ds/kube-proxy), the Service's endpoints "
                         "(kubectl get endpointslices -n <ns>) and that the pods are Ready")),
    Rule("x509-unknown-ca",
         _any("x509: certificate signed by unknown authority", "certificate verify failed",
              "unable to get local issuer certificate", "self-signed certificate in certificate chain"),
         lambda c, ctx: ("TLS does not trust the lab CA on this node: the CA (.labctl/<lab>/ca.crt) must be in the "
                         "trust store (update-ca-certificates / update-ca-trust) and in "
                         f"/etc/containerd/certs.d/{_registry_addr(ctx)}/ and /etc/docker/certs.d/{_registry_addr(ctx)}/; "
                         "re-run: labctl provision --phase host,runtime")),
    Rule("registry-down",
         _both(_any("registry", ":5000", "docker-registry"),
               _found("refused", r"\binactive\b", "failed to connect", "couldn't connect", r"\bdead\b", "not running",
                      "no such host", "could not resolve", "timed out", "connection reset")),
         lambda c, ctx: (f"the registry does not answer: on {_registry_host(ctx)} "
                         "`systemctl status docker-registry` and `journalctl -u docker-registry -n 50`; "
                         f"it must listen on {_registry(ctx).port}/tcp with TLS")),
    Rule("registry-401",
         _both(_any("registry", r":5000|docker-registry|htpasswd", "push", "pull"),
               _found(r"\b401\b", "unauthorized", "authentication required", "no basic auth credentials")),
         lambda c, ctx: ("the registry refused the credentials: compare .labctl/<lab>/secrets/registry-password with "
                         "the htpasswd file the registry reads (its config.yml auth.htpasswd.path must be a FILE, "
                         "bcrypt); re-run labctl provision --phase registry,runtime to re-sync logins")),
    Rule("systemd-cgroup",
         _any("systemdcgroup", "cgroupdriver", "cgroup driver", "native.cgroupdriver"),
         lambda c, ctx: ("the container runtime and kubelet must both use the systemd cgroup driver: "
                         "SystemdCgroup = true in /etc/containerd/config.toml (render the full config: Debian's "
                         "default file has no such line), cgroupDriver: systemd in the KubeletConfiguration, "
                         "native.cgroupdriver=systemd in /etc/docker/daemon.json; restart the service")),
    Rule("swap-on",
         _has(r"\bswap"),
         lambda c, ctx: ("swap is on: kubelet refuses to start with swap (failSwapOn) -- swapoff -a, comment the "
                         "swap line in /etc/fstab, mask the swap units; labctl provision --phase host")),
    Rule("ipvs-fallback",
         _both(_has("ipvs|proxy.mode|proxymode|kube-proxy"), _any("iptables", "nftables", "ip_vs")),
         lambda c, ctx: ("kube-proxy is not in the mode lab.yml asks for: with proxy_mode: ipvs the ip_vs modules "
                         "must be loaded (lsmod | grep ip_vs) or kube-proxy silently falls back to iptables; "
                         "kubectl -n kube-system logs ds/kube-proxy | grep -i proxier")),
    Rule("kernel-module",
         _both(_has("module|modules-load|lsmod"), _any("br_netfilter", "overlay", "ip_vs", "nf_conntrack")),
         lambda c, ctx: ("a kernel module is not loaded: /etc/modules-load.d/ lists it, `modprobe <module>` loads it "
                         "now (impossible inside a container: the host kernel decides)")),
    Rule("sysctl",
         _any("bridge-nf-call", "ip_forward", "sysctl"),
         lambda c, ctx: ("the Kubernetes sysctls are not applied: /etc/sysctl.d/k8s.conf, then "
                         "`sysctl --system` (bridge-nf-call-* need br_netfilter loaded first)")),
    Rule("dns",
         _any("nxdomain", "can't resolve", "could not resolve", "server can't find", "nslookup", "coredns"),
         lambda c, ctx: ("cluster DNS failed: kubectl -n kube-system get pods -l k8s-app=kube-dns; the DNS Service IP "
                         f"must be inside service_subnet ({ctx.get('lab_service_subnet', '?')}) and the domain "
                         f"{ctx.get('lab_dns_domain', 'cluster.local')}; CoreDNS logs show upstream errors")),
    Rule("image-pull",
         _any("imagepullbackoff", "errimagepull", "failed to pull image", "manifest unknown"),
         lambda c, ctx: (f"an image could not be pulled: is it mirrored to {_registry_addr(ctx)} (labctl images; "
                         "labctl provision --phase images) and does containerd trust and log in to the registry "
                         "(/etc/containerd/certs.d/)?")),
    Rule("pending-taint",
         _any("untolerated taint", "didn't tolerate", "insufficient cpu", "insufficient memory", "unschedulable"),
         lambda c, ctx: ("pods could not be scheduled: kubectl describe pod shows the scheduler's reason; "
                         "check node taints (kubectl describe node | grep Taints) and free resources")),
    Rule("nfs",
         _any("nfs", "mount.nfs", "exportfs", "showmount"),
         lambda c, ctx: (f"the NFS export on {LabFacts.from_group_vars(ctx).nfs.server or 'the registry host'} is not usable: "
                         "systemctl status nfs-server; exportfs -v; every Kubernetes node needs the NFS client "
                         "(nfs-common / nfs-utils); labctl provision --phase nfs")),
    Rule("node-not-ready",
         _has("notready|not ready"),
         lambda c, ctx: ("a node is NotReady: kubectl describe node <node> (Conditions), on the node "
                         "`journalctl -u kubelet -n 50`; no CNI yet (provision --phase network) is the usual cause")),
    Rule("apiserver-down",
         _any("connection to the server .* was refused", ":6443.*refused", "apiserver .* not answer"),
         lambda c, ctx: ("the API server does not answer: on the control plane `crictl ps -a | grep kube-apiserver` "
                         "and `journalctl -u kubelet -n 50`; etcd and the static pod manifests in "
                         "/etc/kubernetes/manifests")),
    Rule("host-key",
         _any("host key verification failed", "remote host identification has changed"),
         lambda c, ctx: ("the node's SSH host key changed (a recreated machine): labctl up refreshes "
                         ".labctl/<lab>/ssh/known_hosts")),
    Rule("ssh-auth",
         _any(r"permission denied \(publickey"),
         lambda c, ctx: ("SSH refused labctl's key: the node must have .labctl/<lab>/ssh/id_ed25519.pub in "
                         "authorized_keys (labctl up installs it)")),
    Rule("unreachable",
         _any("ssh: connect to host", "no route to host", "connection timed out during banner", "rc=255",
              "could not resolve hostname", "connection closed by"),
         lambda c, ctx: ("the node does not answer on SSH: labctl status; labctl up brings stopped machines back")),
)


def hint_for(check: Check, ctx: dict[str, Any] | None = None) -> str:
    """The first matching known cause for a failed check, or ''."""
    ctx = ctx or {}
    hay = check.haystack()
    for rule in RULES:
        if rule.match(hay, check, ctx):
            return rule.text(check, ctx)
    return ""


def rule_for(check: Check, ctx: dict[str, Any] | None = None) -> str:
    """The key of the first matching rule ('' if none): for tests and for the JSON report."""
    ctx = ctx or {}
    hay = check.haystack()
    for rule in RULES:
        if rule.match(hay, check, ctx):
            return rule.key
    return ""
