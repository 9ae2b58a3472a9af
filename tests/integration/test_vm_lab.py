"""The VM lab end to end, to a real Kubernetes cluster: three libvirt VMs from labctl's own box
(the shipped lab.yml's topology), Kubernetes from the offline bundle (lab.yml names it).

box and bundle build (cached) -> up -> provision (every phase; the addons' Helm charts cannot be had
here, so that phase stops with its message) -> verify: the node layers with the checks the container
lab must skip (kernel modules, IPVS, swap, sysctls, the kernel NFS server) actually run, and the
control-plane, network and workloads layers for real; only the checks that need the addons skip ->
a second provision changes nothing -> the worker rebooted (kubelet down and back: the node Ready
again; swap, modules and sysctls after the reboot) -> a CoreDNS pod deleted and replaced ->
firewall `ports` then back to `disabled` -> down leaves no domain, volume or network (virsh).

Markers `integration` and `vm`; needs vagrant, vagrant-libvirt, libvirtd, qemu, mmdebstrap, Go
(scripts/setup). Under QEMU emulation (no usable KVM) it takes about half an hour: select it with
`-m vm`, or leave it out with `-m "not vm"`. Environment: LABCTL_VM_IT_NAME (default
`it-vm-<random>`), LABCTL_VM_IT_CIDR (default 192.168.62.0/24), LABCTL_VM_IT_DIR (where the lab's
directory is made; default the system's temporary directory), LABCTL_VM_IT_KEEP=1 keeps the lab.
Run without pytest-xdist's -n (one lab, tests in order).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NODE_LAYERS = ["host", "runtime", "registry", "storage"]
CLUSTER_LAYERS = ["control-plane", "network", "workloads"]
VIRSH = ["virsh", "-c", "qemu:///system"]
# what the container lab skips and a VM must run (check names in tests/infra, matched loosely)
VM_ONLY = {
    "host": re.compile(r"swap|module|sysctl|ipvs", re.I),
    "storage": re.compile(r"nfs|export|mount", re.I),
}
# what may skip on this machine: the checks that need the Helm-chart addons (no chart archive here)
ALLOWED_SKIP = re.compile(r"addon|metrics-server|ingress|monitoring|dashboard|headlamp|traefik|grafana|chart", re.I)
KUBECTL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf"

pytestmark = [pytest.mark.integration, pytest.mark.vm]
TIMES: dict[str, float] = {}


@dataclass(frozen=True)
class VmLab:
    dir: Path
    lab_file: Path
    name: str

    def run(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        if argv and argv[0] not in ("init", "box", "bundle"):
            argv[1:1] = ["--lab", str(self.lab_file)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "LABCTL_VM_PROVIDER": "libvirt"}
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "labctl", *argv], cwd=self.dir, env=env, capture_output=True,
                             text=True, timeout=timeout)
        TIMES[" ".join(args[:3])] = time.monotonic() - t0
        return res

    def set(self, section: str, key: str, value: object) -> None:
        data = yaml.safe_load(self.lab_file.read_text())
        data.setdefault(section, {})[key] = value
        self.lab_file.write_text(yaml.safe_dump(data, sort_keys=False))


def explain(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\nstdout:\n{res.stdout[-6000:]}\nstderr:\n{res.stderr[-4000:]}"


def virsh_names(*args: str) -> list[str]:
    res = subprocess.run([*VIRSH, *args], capture_output=True, text=True, timeout=60)
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]


def leftovers(name: str) -> dict[str, list[str]]:
    prefix = f"{name}-"
    pools = virsh_names("pool-list", "--all", "--name")
    vols = [v.split()[0] for p in pools for v in virsh_names("vol-list", p)[2:] if v.startswith(prefix)]
    return {
        "domains": [d for d in virsh_names("list", "--all", "--name") if d.startswith(prefix)],
        "volumes": vols,
        "networks": [n for n in virsh_names("net-list", "--all", "--name") if n.startswith(prefix)],
    }


@pytest.fixture(scope="module")
def vm_lab() -> Iterator[VmLab]:
    for binary in ("vagrant", "virsh", "qemu-system-x86_64", "mmdebstrap", "qemu-img"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (scripts/setup installs the VM lab's tools)")
    if subprocess.run([*VIRSH, "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("libvirtd does not answer (scripts/setup starts it)")
    name = os.environ.get("LABCTL_VM_IT_NAME") or f"it-vm-{secrets.token_hex(2)}"
    cidr = os.environ.get("LABCTL_VM_IT_CIDR", "192.168.62.0/24")
    prefix = cidr.rsplit(".", 1)[0]
    # not under pytest's basetemp: pytest keeps only its last three, so another pytest run on this machine
    # during the hour this lab lives would delete the lab's state (its SSH key, Vagrant's machine ids)
    d = Path(tempfile.mkdtemp(prefix=f"labctl-{name}-", dir=os.environ.get("LABCTL_VM_IT_DIR")))
    data = yaml.safe_load((REPO / "lab.yml").read_text())
    data["name"] = name
    data["network"]["cidr"] = cidr
    for node in data["nodes"]:
        node["ip"] = f"{prefix}.{node['ip'].rsplit('.', 1)[1]}"
    lab = VmLab(d, d / "lab.yml", name)
    lab.lab_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield lab
    finally:
        if os.environ.get("LABCTL_VM_IT_KEEP") != "1":
            lab.run("down", "--yes", timeout=1800)
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"\nVM lab kept: labctl --lab {lab.lab_file} ...")
        print("\nVM lab timings (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in TIMES.items()))


def verify(lab: VmLab, tmp: Path, layers: list[str]) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp / "report.json"
    res = lab.run("verify", "--layer", ",".join(layers), "--json", str(out), timeout=1800)
    assert out.exists(), explain(res)
    return res, {lr["layer"]: lr for lr in json.loads(out.read_text())["layers"]}


def provision(lab: VmLab, *args: str) -> dict:
    res = lab.run("provision", *args, "--no-progress", "--json", timeout=3600)
    assert res.returncode == 0, explain(res)
    return json.loads(res.stdout)


def kubectl(lab: VmLab, args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return lab.run("ssh", "master", "--", f"{KUBECTL} {args}", timeout=timeout)


def wait_for(what: str, probe, timeout: float, interval: float = 5) -> str:
    """Poll probe() until it returns a truthy string, at most timeout seconds; fail with the last answer."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        last = probe()
        if last and not last.startswith("!"):
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last})")


def test_bundle_build(vm_lab: VmLab) -> None:
    res = vm_lab.run("bundle", "build", "--lab", str(vm_lab.lab_file), timeout=5400)
    assert res.returncode == 0, explain(res)


def test_box_build_is_cached(vm_lab: VmLab) -> None:
    first = vm_lab.run("box", "build", timeout=3600)
    assert first.returncode == 0, explain(first)
    again = vm_lab.run("box", "build", timeout=600)
    assert again.returncode == 0, explain(again)
    assert "(cached in" in again.stdout, again.stdout


def test_up(vm_lab: VmLab) -> None:
    res = vm_lab.run("up", timeout=3600)
    assert res.returncode == 0, explain(res)
    for node in ("master", "node", "registry"):
        assert re.search(rf"{node}\b.*running", res.stdout), res.stdout
    domains = virsh_names("list", "--name")
    assert {f"{vm_lab.name}-{n}" for n in ("master", "node", "registry")} <= set(domains), domains
    # the box boots with tsc=reliable: under emulation the HPET fallback made every clock read ~16x slower
    clock = vm_lab.run("ssh", "master", "--", "cat /sys/devices/system/clocksource/clocksource0/current_clocksource")
    assert clock.stdout.strip() in ("tsc", "kvm-clock"), explain(clock)


def test_provision_every_phase_then_verify(vm_lab: VmLab, tmp_path: Path) -> None:
    res = vm_lab.run("provision", "--no-progress", timeout=5400)
    # every phase but addons runs; addons stops at once: its chart archives cannot be had here
    assert res.returncode != 0 and "chart" in res.stderr and "cannot be had" in res.stderr, explain(res)
    assert re.search(r"phase network done|network", res.stdout), explain(res)
    res, by = verify(vm_lab, tmp_path, NODE_LAYERS + CLUSTER_LAYERS + ["addons"])
    assert by["addons"]["status"] == "skipped", by["addons"]
    for layer in NODE_LAYERS + CLUSTER_LAYERS:
        checks = by[layer]["checks"]
        assert by[layer]["status"] == "passed", (layer, [c for c in checks if c["outcome"] != "passed"])
        skipped = [c for c in checks if c["outcome"] == "skipped" and not ALLOWED_SKIP.search(c.get("reason") or "")]
        assert not skipped, (layer, skipped)  # nothing skipped for being a VM, or for this machine
        if layer in VM_ONLY:
            ran = [c for c in checks if VM_ONLY[layer].search(c["name"]) and c["outcome"] == "passed"]
            assert ran, (layer, [c["name"] for c in checks])


def test_second_provision_changes_nothing(vm_lab: VmLab) -> None:
    result = provision(vm_lab, "--until", "network")
    assert result["changed_total"] == 0, result


def test_worker_reboot_kubelet_back_and_host_settings_kept(vm_lab: VmLab, tmp_path: Path) -> None:
    before = vm_lab.run("ssh", "node", "--", "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    vm_lab.run("ssh", "node", "--", "sudo systemctl reboot", timeout=60)
    deadline = time.monotonic() + 600
    after = before
    while time.monotonic() < deadline:
        time.sleep(5)
        res = vm_lab.run("ssh", "node", "--", "cat /proc/sys/kernel/random/boot_id", timeout=60)
        if res.returncode == 0 and res.stdout.strip() and res.stdout.strip() != before:
            after = res.stdout.strip()
            break
    assert after != before, "the worker did not come back after a reboot"
    state = vm_lab.run("ssh", "node", "--", "systemctl is-system-running --wait; swapon --show --noheadings; "
                       "lsmod | awk '{print $1}' | grep -xE 'br_netfilter|overlay|ip_vs' | sort | tr '\\n' ' '; "
                       "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables", timeout=300)
    lines = state.stdout.split()
    assert "/swapfile" not in state.stdout, state.stdout
    assert {"br_netfilter", "overlay", "ip_vs"} <= set(lines), state.stdout
    assert lines[-2:] == ["1", "1"], state.stdout

    def node_ready() -> str:
        out = kubectl(vm_lab, "get node node -o jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        return "Ready" if out.stdout.strip() == "True" else f"!{out.stdout.strip()} {out.stderr.strip()[-200:]}"

    wait_for("the rebooted worker Ready again", node_ready, 600)
    res, by = verify(vm_lab, tmp_path, ["host", "network"])
    assert res.returncode == 0, explain(res)


def test_kubelet_restarted_node_ready_again(vm_lab: VmLab) -> None:
    res = vm_lab.run("ssh", "node", "--", "sudo systemctl restart kubelet && systemctl is-active kubelet", timeout=120)
    assert res.stdout.strip() == "active", explain(res)

    def ready() -> str:
        out = kubectl(vm_lab, "wait --for=condition=Ready node/node --timeout=20s")
        return "Ready" if out.returncode == 0 else f"!{out.stdout.strip()} {out.stderr.strip()[-200:]}"

    wait_for("the worker Ready after a kubelet restart", ready, 300)


def test_coredns_pod_deleted_is_replaced(vm_lab: VmLab) -> None:
    pods = kubectl(vm_lab, "-n kube-system get pods -l k8s-app=kube-dns -o jsonpath={.items[*].metadata.name}")
    names = pods.stdout.split()
    assert names, explain(pods)
    gone = kubectl(vm_lab, f"-n kube-system delete pod {names[0]} --wait=true --timeout=120s", timeout=180)
    assert gone.returncode == 0, explain(gone)

    def replaced() -> str:
        out = kubectl(vm_lab, "-n kube-system get pods -l k8s-app=kube-dns -o "
                              "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].ready} {end}")
        now = dict(p.split("=", 1) for p in out.stdout.split() if "=" in p)
        fresh = {n: r for n, r in now.items() if n not in names}
        ok = len(now) >= len(names) and fresh and all(r == "true" for r in now.values())
        return out.stdout.strip() if ok else f"!{out.stdout.strip()}"

    wait_for("a new CoreDNS pod Ready in place of the deleted one", replaced, 300)
    lookup = kubectl(vm_lab, "get --raw /api/v1/namespaces/kube-system/services/kube-dns")
    assert lookup.returncode == 0, explain(lookup)


def test_firewall_ports_then_disabled(vm_lab: VmLab, tmp_path: Path) -> None:
    vm_lab.set("host", "firewall", "ports")
    provision(vm_lab, "--phase", "host")
    res, by = verify(vm_lab, tmp_path, ["host", "registry"])
    assert res.returncode == 0, explain(res)
    state = vm_lab.run("ssh", "master", "--", "sudo firewall-cmd --state", timeout=120)
    assert state.stdout.strip() == "running", explain(state)
    vm_lab.set("host", "firewall", "disabled")
    provision(vm_lab, "--phase", "host")
    res, by = verify(vm_lab, tmp_path, ["host"])
    assert res.returncode == 0, explain(res)


def test_down_removes_every_domain_volume_and_network(vm_lab: VmLab) -> None:
    res = vm_lab.run("down", "--yes", timeout=1800)
    assert res.returncode == 0, explain(res)
    assert leftovers(vm_lab.name) == {"domains": [], "volumes": [], "networks": []}
