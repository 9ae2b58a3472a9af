"""Known causes of a failure -> a hint a person can act on: one table format, one lookup.

A rule looks at a `Case`: the text of what failed (as written and lowercased), the
thing that failed (`subject`) and the lab's group_vars (`ctx`: lab_pod_subnet,
lab_firewall, ...). `first_rule(rules, case)` gives the first rule that matches;
rules are ordered from the most specific cause to the most generic one.

Two tables use it:
- CHECK_RULES, for a failed check of `labctl verify` (`hint_for(check, ctx)`): the
  text is every field of the check (its layer, name, what/expected/found, evidence
  and pytest's message);
- FAILURE_RULES, for the task that stopped a host in `labctl provision`
  (`failure_hint(failure)`): the text is the module's message, stderr and stdout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from labctl.model.facts import LabFacts, Registry

if TYPE_CHECKING:
    from labctl.display.failures import Failure
    from labctl.display.report import Check


@dataclass(frozen=True)
class Case:
    """What the rules look at."""

    text: str
    subject: Any = None
    ctx: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def hay(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class Rule:
    key: str
    match: Callable[[Case], bool]
    text: Callable[[Case], str]


def first_rule(rules: tuple[Rule, ...], case: Case) -> Rule | None:
    """The first rule of `rules` that matches `case` (None if none does)."""
    return next((rule for rule in rules if rule.match(case)), None)


# -- matchers ------------------------------------------------------------------------------------
def _has(*words: str) -> Callable[[Case], bool]:
    """Every word (a regex) occurs in the text."""
    pats = [re.compile(w) for w in words]
    return lambda k: all(p.search(k.hay) for p in pats)


def _any(*words: str) -> Callable[[Case], bool]:
    """Some word (a regex) occurs in the text."""
    pats = [re.compile(w) for w in words]
    return lambda k: any(p.search(k.hay) for p in pats)


def _found(*words: str) -> Callable[[Case], bool]:
    """A word occurs in what a check FOUND (found, evidence, error), not in what was expected."""
    pats = [re.compile(w) for w in words]

    def match(k: Case) -> bool:
        c = k.subject
        if c.what:  # an expect()/check() failure: its message repeats `expected`, so leave it out
            text = "\n".join((c.found, c.detail))
        else:
            text = "\n".join([c.message] + [ln for ln in c.longrepr.splitlines() if ln.startswith("E ")])
        return any(p.search(text.lower()) for p in pats)
    return match


def _both(a: Callable[[Case], bool], b: Callable[[Case], bool]) -> Callable[[Case], bool]:
    return lambda k: a(k) and b(k)


def _firewall_ports(k: Case) -> bool:
    return k.ctx.get("lab_firewall") == "ports"


def _unreachable(k: Case) -> bool:
    return k.subject.kind == "unreachable"


def _registry(ctx: dict[str, Any]) -> Registry:
    return LabFacts.from_group_vars(ctx).registry


def _registry_addr(ctx: dict[str, Any]) -> str:
    return _registry(ctx).address or "the registry"


def _registry_host(ctx: dict[str, Any]) -> str:
    return _registry(ctx).name or "the registry host"


# verify: a failed check (Case.subject is a report.Check, Case.ctx the lab's group_vars)
CHECK_RULES: tuple[Rule, ...] = (
    Rule("flannel-pod-subnet",
         _both(_has("notready|not ready"), _has("flannel")),
         lambda k: (f"a node is NotReady while flannel crash-loops: compare kubernetes.pod_subnet "
                         f"({k.ctx.get('lab_pod_subnet', '?')}) with flannel's net-conf.json \"Network\" "
                         "(kubectl -n kube-flannel get cm kube-flannel-cfg -o yaml) and the podCIDR of the node "
                         "(kubectl get node -o jsonpath='{.items[*].spec.podCIDR}'); they must agree")),
    Rule("flannel-crashloop",
         _has("flannel", "crashloopbackoff|crash"),
         lambda k: ("flannel is crash-looping: kubectl -n kube-flannel logs ds/kube-flannel-ds; the usual cause is "
                         f"a pod_subnet ({k.ctx.get('lab_pod_subnet', '?')}) different from flannel's Network, or "
                         "br_netfilter not loaded")),
    Rule("metrics-503",
         _both(_any("metrics", "top node", "top pod", "hpa", "horizontalpodautoscaler"),
               _any(r"\b503\b", "serviceunavailable", "service unavailable", "metrics api not available",
                    "metrics not available", "failedgetresourcemetric", "unable to get metrics")),
         lambda k: ("the metrics API is not serving: look for pending kubelet-serving CSRs "
                         "(kubectl get csr | grep Pending; kubectl certificate approve <name>) -- kubelets need "
                         "serverTLSBootstrap: true and their serving certificates approved; then "
                         "kubectl -n kube-system logs deploy/metrics-server")),
    Rule("nodeport-firewall",
         _both(_firewall_ports, _both(_any("nodeport", r"\b3[0-2]\d{3}\b"),
                                      _any("refused", "timed out", "timeout", "no route", "unreachable", "unanswered"))),
         lambda k: ("host.firewall is 'ports': NodePorts need 30000-32767/tcp+udp open on every node "
                         "(firewall-cmd --list-ports; the firewall role's port list), plus 8472/udp for flannel "
                         "and cni0/flannel.1 in the trusted zone")),
    Rule("nodeport-unanswered",
         _both(_any("nodeport", "ingress"), _any("refused", "timed out", "timeout", "no route", "unanswered")),
         lambda k: ("a NodePort did not answer: check kube-proxy on that node "
                         "(kubectl -n kube-system logs ds/kube-proxy), the Service's endpoints "
                         "(kubectl get endpointslices -n <ns>) and that the pods are Ready")),
    Rule("x509-unknown-ca",
         _any("x509: certificate signed by unknown authority", "certificate verify failed",
              "unable to get local issuer certificate", "self-signed certificate in certificate chain"),
         lambda k: ("TLS does not trust the lab CA on this node: the CA (.labctl/<lab>/ca.crt) must be in the "
                         "trust store (update-ca-certificates / update-ca-trust) and in "
                         f"/etc/containerd/certs.d/{_registry_addr(k.ctx)}/ and /etc/docker/certs.d/{_registry_addr(k.ctx)}/; "
                         "re-run: labctl provision --phase host,runtime")),
    Rule("registry-down",
         _both(_any("registry", ":5000", "docker-registry"),
               _found("refused", r"\binactive\b", "failed to connect", "couldn't connect", r"\bdead\b", "not running",
                      "no such host", "could not resolve", "timed out", "connection reset")),
         lambda k: (f"the registry does not answer: on {_registry_host(k.ctx)} "
                    "`systemctl status docker-registry` and `journalctl -u docker-registry -n 50`; "
                    f"it must listen on {_registry(k.ctx).port}/tcp with TLS")),
    Rule("registry-401",
         _both(_any("registry", r":5000|docker-registry|htpasswd", "push", "pull"),
               _found(r"\b401\b", "unauthorized", "authentication required", "no basic auth credentials")),
         lambda k: ("the registry refused the credentials: compare .labctl/<lab>/secrets/registry-password with "
                         "the htpasswd file the registry reads (its config.yml auth.htpasswd.path must be a FILE, "
                         "bcrypt); re-run labctl provision --phase registry,runtime to re-sync logins")),
    Rule("systemd-cgroup",
         _any("systemdcgroup", "cgroupdriver", "cgroup driver", "native.cgroupdriver"),
         lambda k: ("the container runtime and kubelet must both use the systemd cgroup driver: "
                         "SystemdCgroup = true in /etc/containerd/config.toml (render the full config: Debian's "
                         "default file has no such line), cgroupDriver: systemd in the KubeletConfiguration, "
                         "native.cgroupdriver=systemd in /etc/docker/daemon.json; restart the service")),
    Rule("swap-on",
         _has(r"\bswap"),
         lambda k: ("swap is on: kubelet refuses to start with swap (failSwapOn) -- swapoff -a, comment the "
                         "swap line in /etc/fstab, mask the swap units; labctl provision --phase host")),
    Rule("ipvs-fallback",
         _both(_has("ipvs|proxy.mode|proxymode|kube-proxy"), _any("iptables", "nftables", "ip_vs")),
         lambda k: ("kube-proxy is not in the mode lab.yml asks for: with proxy_mode: ipvs the ip_vs modules "
                         "must be loaded (lsmod | grep ip_vs) or kube-proxy silently falls back to iptables; "
                         "kubectl -n kube-system logs ds/kube-proxy | grep -i proxier")),
    Rule("kernel-module",
         _both(_has("module|modules-load|lsmod"), _any("br_netfilter", "overlay", "ip_vs", "nf_conntrack")),
         lambda k: ("a kernel module is not loaded: /etc/modules-load.d/ lists it, `modprobe <module>` loads it "
                         "now (impossible inside a container: the host kernel decides)")),
    Rule("sysctl",
         _any("bridge-nf-call", "ip_forward", "sysctl"),
         lambda k: ("the Kubernetes sysctls are not applied: /etc/sysctl.d/k8s.conf, then "
                         "`sysctl --system` (bridge-nf-call-* need br_netfilter loaded first)")),
    Rule("dns",
         _any("nxdomain", "can't resolve", "could not resolve", "server can't find", "nslookup", "coredns"),
         lambda k: ("cluster DNS failed: kubectl -n kube-system get pods -l k8s-app=kube-dns; the DNS Service IP "
                         f"must be inside service_subnet ({k.ctx.get('lab_service_subnet', '?')}) and the domain "
                         f"{k.ctx.get('lab_dns_domain', 'cluster.local')}; CoreDNS logs show upstream errors")),
    Rule("image-pull",
         _any("imagepullbackoff", "errimagepull", "failed to pull image", "manifest unknown"),
         lambda k: (f"an image could not be pulled: is it mirrored to {_registry_addr(k.ctx)} (labctl images; "
                         "labctl provision --phase images) and does containerd trust and log in to the registry "
                         "(/etc/containerd/certs.d/)?")),
    Rule("pending-taint",
         _any("untolerated taint", "didn't tolerate", "insufficient cpu", "insufficient memory", "unschedulable"),
         lambda k: ("pods could not be scheduled: kubectl describe pod shows the scheduler's reason; "
                         "check node taints (kubectl describe node | grep Taints) and free resources")),
    Rule("nfs",
         _any("nfs", "mount.nfs", "exportfs", "showmount"),
         lambda k: (f"the NFS export on {LabFacts.from_group_vars(k.ctx).nfs.server or 'the registry host'} is not usable: "
                         "systemctl status nfs-server; exportfs -v; every Kubernetes node needs the NFS client "
                         "(nfs-common / nfs-utils); labctl provision --phase nfs")),
    Rule("node-not-ready",
         _has("notready|not ready"),
         lambda k: ("a node is NotReady: kubectl describe node <node> (Conditions), on the node "
                         "`journalctl -u kubelet -n 50`; no CNI yet (provision --phase network) is the usual cause")),
    Rule("apiserver-down",
         _any("connection to the server .* was refused", ":6443.*refused", "apiserver .* not answer"),
         lambda k: ("the API server does not answer: on the control plane `crictl ps -a | grep kube-apiserver` "
                         "and `journalctl -u kubelet -n 50`; etcd and the static pod manifests in "
                         "/etc/kubernetes/manifests")),
    Rule("host-key",
         _any("host key verification failed", "remote host identification has changed"),
         lambda k: ("the node's SSH host key changed (a recreated machine): labctl up refreshes "
                         ".labctl/<lab>/ssh/known_hosts")),
    Rule("ssh-auth",
         _any(r"permission denied \(publickey"),
         lambda k: ("SSH refused labctl's key: the node must have .labctl/<lab>/ssh/id_ed25519.pub in "
                         "authorized_keys (labctl up installs it)")),
    Rule("unreachable",
         _any("ssh: connect to host", "no route to host", "connection timed out during banner", "rc=255",
              "could not resolve hostname", "connection closed by"),
         lambda k: ("the node does not answer on SSH: labctl status; labctl up brings stopped machines back")),
)


# provision: the task that stopped a host (Case.subject is a failures.Failure)
UNIT_FAILED = re.compile(r"Unable to (?:start|restart|reload) service ([\w@.\-]+)|Job for ([\w@.\-]+?)(?:\.service)? failed")


def _unit(k: Case) -> str | None:
    m = UNIT_FAILED.search(k.text)
    return (m.group(1) or m.group(2)) if m else None


FAILURE_RULES: tuple[Rule, ...] = (
    Rule("host-key",
         _both(_unreachable, _any("host key verification failed", "remote host identification has changed")),
         lambda k: ("the node's SSH host key is not the one in the lab's known_hosts (was it recreated?): "
                    "`labctl up` records the keys again")),
    Rule("ssh-auth",
         _both(_unreachable, _any("permission denied")),
         lambda k: ("the node refused the lab's SSH key: `labctl up` installs it; for provider existing check "
                    "nodes[].ssh_key")),
    Rule("unreachable",  # every other unreachable host: the rules below are for a host that was reached
         _unreachable,
         lambda k: (f"is the lab up? `labctl status`; `labctl up` starts stopped nodes; then provision again "
                    f"(--limit {k.subject.host})")),
    Rule("no-log",
         _any("censored", "no_log"),
         lambda k: "the task carries a secret (no_log), so Ansible hid its output; run the role's check by hand on the node"),
    Rule("unit-failed",
         lambda k: _unit(k) is not None and not k.subject.journal,
         lambda k: f"the unit's log: `labctl ssh {k.subject.host} -- journalctl -u {_unit(k)} -n 50 --no-pager`"),
    Rule("apt-lock",
         _any("could not get lock", "unable to acquire the dpkg frontend lock"),
         lambda k: "another apt/dpkg is running on the node (unattended-upgrades?); wait and provision again"),
    Rule("package-mirror",
         _any("temporary failure resolving", "could not resolve host", "failed to fetch"),
         lambda k: ("the node cannot reach its package mirror: check the node's DNS and network "
                    f"(`labctl ssh {k.subject.host} -- getent hosts deb.debian.org`)")),
    Rule("disk-full",
         _any("no space left on device"),
         lambda k: "the node's disk is full"),
)


def _check_case(check: Check, ctx: dict[str, Any] | None) -> Case:
    return Case(check.haystack(), check, ctx or {})


def hint_for(check: Check, ctx: dict[str, Any] | None = None) -> str:
    """The first matching known cause for a failed check, or ''."""
    case = _check_case(check, ctx)
    rule = first_rule(CHECK_RULES, case)
    return rule.text(case) if rule else ""


def rule_for(check: Check, ctx: dict[str, Any] | None = None) -> str:
    """The key of the first matching rule ('' if none): for tests and for the JSON report."""
    rule = first_rule(CHECK_RULES, _check_case(check, ctx))
    return rule.key if rule else ""


def failure_hint(f: Failure) -> str | None:
    """A next step for the cause of a provision failure, when it is a known one."""
    case = Case("\n".join([f.msg, *f.stderr, *f.stdout]), f)
    rule = first_rule(FAILURE_RULES, case)
    return rule.text(case) if rule else None
