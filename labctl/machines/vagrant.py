"""VMs through Vagrant: VirtualBox or libvirt (`--vm-provider` / LABCTL_VM_PROVIDER; default VirtualBox
where VBoxManage is installed, else libvirt).

The box is chosen here, nowhere else (BOXES; lab.yml's `box` overrides it), and reaches the
Vagrantfile through the lab's resolved file (machines/vagrantfile.py), with the libvirt driver and
management network decided here. libvirt with debian12 uses labctl's own box, built and cached by
machines/box.py when missing (`labctl box build`).

libvirt: KVM when a KVM guest really runs here, else QEMU's software emulation (TCG), decided by
kvm_usable() -- a bounded boot of the box's own kernel under KVM -- or LABCTL_LIBVIRT_DRIVER.
Each lab gets its own libvirt networks, `<lab>-net` (the lab's network, isolated) and
`<lab>-mgmt` (Vagrant's management network, NAT), which `labctl down` removes with the VMs.

Vagrant's insecure key stays Vagrant's: after `vagrant up`, labctl runs one `vagrant ssh`
per node that authorizes the lab key for the `vagrant` user and prints the node's host
keys, which go into known_hosts (read from the node itself, not scanned). Ansible then
connects as `vagrant` (become) over the lab IP with the lab key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labctl.errors import RunFailed, UserError
from labctl.machines import NodeStatus, Progress, common, reach, sshkeys, vagrantfile
from labctl.model.config import Lab, Node
from labctl.state import StateDir

INSTALL_HINT = {
    "virtualbox": "install VirtualBox (https://www.virtualbox.org) and vagrant (apt-get install -y vagrant)",
    "libvirt": "apt-get install -y vagrant vagrant-libvirt libvirt-daemon-system",
}
BINARY = {"virtualbox": "VBoxManage", "libvirt": "virsh"}

# Where each (hypervisor, os) box comes from; None: labctl's own (labctl box build, machines/box.py).
# Ubuntu/Rocky: registry boxes (or build your own from their cloud images: docs/vm-lab.md).
BOXES: dict[str, dict[str, str | None]] = {
    "virtualbox": {"debian12": "debian/bookworm64", "ubuntu2404": "bento/ubuntu-24.04", "rocky9": "rockylinux/9"},
    "libvirt": {"debian12": None, "ubuntu2404": "generic/ubuntu2404", "rocky9": "rockylinux/9"},
}
LIBVIRT_URI = "qemu:///system"
KVM_PROBE_SECONDS = 20.0


def default_vm_provider() -> str:
    """$LABCTL_VM_PROVIDER, else VirtualBox where it is installed, else libvirt."""
    return os.environ.get("LABCTL_VM_PROVIDER") or ("virtualbox" if shutil.which("VBoxManage") else "libvirt")


def resolve_box(lab: Lab, lab_file: Path, vm_provider: str, build: bool = False,
                on_line: Progress = lambda _l: None) -> dict[str, str | None]:
    """{name, version, url} of the box for the Vagrantfile; labctl's own box is built (cached) when `build`."""
    name, version = lab.box.name, lab.box.version
    if name:
        url = None
        if re.match(r"^(https?|file)://", name) or name.endswith(".box"):
            url = name
            if not re.match(r"^(https?|file)://", name):
                path = Path(name).expanduser()
                path = path if path.is_absolute() else (lab_file.resolve().parent / path)
                if not path.is_file():
                    raise UserError(f"box.name: found {name!r}; no such box file ({path})")
                url = path.resolve().as_uri()
            stem = re.sub(r"[^a-z0-9.-]+", "-", Path(url.split("?")[0]).name.lower().removesuffix(".box")
                          .removesuffix(".json")).strip("-") or "box"
            name = f"{lab.name}/{stem}"
        return {"name": name, "version": version or None, "url": url}
    default = BOXES[vm_provider][lab.os]
    if default is not None:
        return {"name": default, "version": version or None, "url": None}
    from labctl.machines import box

    if build:
        _path, built_version, _built = box.build(vm_provider, on_line=on_line)
    else:
        built_version = box.box_version(box.recipe_hash())
    return {"name": box.BOX_NAME, "version": version or built_version, "url": None}


# ---------------------------------------------------------------------------
# libvirt: KVM or software emulation, the management network
# ---------------------------------------------------------------------------


def _probe_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl" / "kvm-probe.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def kvm_usable(kernel: Path | None, timeout: float = KVM_PROBE_SECONDS) -> tuple[bool, str]:
    """Does a KVM guest run here? (usable, why). Cached per host boot, QEMU and kernel.

    The honest test is the thing itself: QEMU with -accel kvm boots the box's own kernel
    (direct kernel boot, no disk, 128 MiB) with panic=-1 and -no-reboot; a working KVM gets it
    to its "VFS: Unable to mount root fs" panic in a second or two and QEMU exits. Where nested
    KVM is broken the guest hangs right after the BIOS with no kernel line: killed after
    `timeout` s, emulation it is. No /dev/kvm (or no access) needs no probe.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False, "qemu-system-x86_64 is not installed"
    if kernel is None or not kernel.is_file():
        return True, "no kernel to probe with; /dev/kvm is present"
    key = hashlib.sha256(f"{_boot_id()}|{os.stat(qemu).st_mtime}|{kernel.name}".encode()).hexdigest()[:16]
    cache = _probe_cache()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key]["ok"]), known[key]["why"] + " (cached)"
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1", "-nodefaults", "-nographic",
            "-no-reboot", "-serial", "stdio", "-monitor", "none", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 loglevel=4"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=timeout)
        took = time.monotonic() - start
        text = out.decode(errors="replace")
        ok = "Kernel panic" in text or "VFS:" in text
        why = (f"a KVM guest booted its kernel in {took:.1f} s" if ok else
               f"QEMU with KVM exited without booting the kernel: {text.strip().splitlines()[-1:] or ['no output']}")
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        ok = False
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
        why = (f"a KVM guest did not boot its kernel within {timeout:.0f} s "
               f"({'no output after the BIOS' if not lines else 'last line: ' + lines[-1][:80]}; nested KVM?)")
    known[key] = {"ok": ok, "why": why}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError:
        pass
    return ok, why


def forced_libvirt_driver() -> str | None:
    """LABCTL_LIBVIRT_DRIVER (kvm | qemu) when set."""
    forced = os.environ.get("LABCTL_LIBVIRT_DRIVER")
    if forced and forced not in vagrantfile.LIBVIRT_DRIVERS:
        raise UserError(f"LABCTL_LIBVIRT_DRIVER: found {forced!r}; allowed: kvm, qemu")
    return forced or None


def libvirt_driver(progress: Progress) -> str:
    """kvm or qemu: LABCTL_LIBVIRT_DRIVER when set, else what kvm_usable() finds (a line says which)."""
    forced = forced_libvirt_driver()
    if forced:
        return forced
    from labctl.machines import box

    ok, why = kvm_usable(box.newest_kernel())
    if ok:
        return "kvm"
    progress(f"libvirt: KVM is not usable here ({why}); falling back to QEMU software emulation "
             "(TCG: slower; LABCTL_LIBVIRT_DRIVER=kvm overrides)")
    return "qemu"


def _virsh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", LIBVIRT_URI, *args], capture_output=True, text=True, timeout=timeout)


def libvirt_networks() -> dict[str, list[ipaddress.IPv4Network]]:
    """{libvirt network name: its IPv4 networks}."""
    res = _virsh("net-list", "--all", "--name")
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    for name in res.stdout.split():
        xml = _virsh("net-dumpxml", name).stdout
        nets = []
        for tag in re.findall(r"<ip\b[^>]*>", xml):
            addr = re.search(r"address='([0-9.]+)'", tag)
            mask = re.search(r"(?:netmask|prefix)='([0-9.]+)'", tag)
            if addr and mask:
                try:
                    nets.append(ipaddress.IPv4Network(f"{addr.group(1)}/{mask.group(1)}", strict=False))
                except ValueError:
                    continue
        out[name] = nets
    return out


def management_network(lab: Lab) -> str:
    """The lab's own management network `<lab>-mgmt`: its current address, else a free /24 in 10.100-199
    chosen from the lab name (not the lab's, pod or service networks, a host address or another libvirt net)."""
    name = vagrantfile.management_network_name(lab)
    nets = libvirt_networks() if shutil.which("virsh") else {}
    if nets.get(name):
        return str(nets[name][0])
    taken = [n for k, v in nets.items() if k != name for n in v]
    taken += [lab.network.cidr, lab.kubernetes.pod_subnet, lab.kubernetes.service_subnet]
    taken += [ipaddress.IPv4Network(f"{a}/32") for a in (common.host_addresses() if shutil.which("ip") else {})]
    start = int(hashlib.sha256(lab.name.encode()).hexdigest()[:6], 16)
    for i in range(100 * 256):
        k = (start + i) % (100 * 256)
        cand = ipaddress.IPv4Network(f"10.{100 + k // 256}.{k % 256}.0/24")
        if not any(cand.overlaps(t) for t in taken):
            return str(cand)
    raise UserError("no free /24 for the lab's libvirt management network in 10.100.0.0-10.199.255.0")


class VagrantProvider:
    def __init__(self, lab: Lab, lab_file: Path, vm_provider: str | None = None):
        self.lab = lab
        self.lab_file = lab_file
        self.state = StateDir(lab_file, lab.name)
        # the hypervisor `up` used (recorded), so down/status/ssh find the VMs without the option again
        recorded = self.state.root / "vm-provider"
        self.vm_provider = vm_provider or (recorded.read_text().strip() if recorded.is_file() else "") \
            or default_vm_provider()
        if self.vm_provider not in INSTALL_HINT:
            raise UserError(f"LABCTL_VM_PROVIDER: found {self.vm_provider!r}; allowed: virtualbox, libvirt")

        self._resolved: dict[str, Any] | None = None

    def resolve(self, build: bool = False, progress: Progress = lambda _l: None) -> dict[str, Any]:
        """What the Vagrantfile reads (machines/vagrantfile.py): the box (built when `build` and missing),
        and for libvirt the driver (probed when `build`; else LABCTL_LIBVIRT_DRIVER, else the decision the
        last `up` wrote, else kvm) and the management network."""
        if self._resolved is None or build:
            driver = mgmt = None
            if self.vm_provider == "libvirt":
                mgmt = management_network(self.lab)
                driver = libvirt_driver(progress) if build else (
                    forced_libvirt_driver() or self._recorded_driver() or "kvm")
            self._resolved = vagrantfile.resolve(
                self.lab, self.lab_file, self.vm_provider,
                box=resolve_box(self.lab, self.lab_file, self.vm_provider, build=build, on_line=progress),
                libvirt_driver=driver, management_network=mgmt)
        return self._resolved

    def _recorded_driver(self) -> str | None:
        try:
            recorded = json.loads(self.state.vagrant_config.read_text())
            driver = recorded["libvirt"]["driver"] if recorded.get("provider") == "libvirt" else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return driver if driver in vagrantfile.LIBVIRT_DRIVERS else None

    def _env(self, build: bool = False, progress: Progress = lambda _l: None) -> dict[str, str]:
        """Vagrant's environment, the lab's resolved file written first (when it changed)."""
        env = vagrantfile.vagrant_env(self.state, self.resolve(build, progress))
        env["VAGRANT_DEFAULT_PROVIDER"] = self.vm_provider
        return env

    def _cwd(self) -> Path:
        return self.lab_file.resolve().parent

    def machine_states(self) -> dict[str, str]:
        """{node: state} from `vagrant status --machine-readable` (running, poweroff, not_created, ...)."""
        res = subprocess.run(["vagrant", "status", "--machine-readable"], env=self._env(), cwd=self._cwd(),
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise UserError(f"vagrant status failed: {res.stderr.strip() or res.stdout.strip()[-500:]}")
        out: dict[str, str] = {}
        for line in res.stdout.splitlines():
            parts = line.split(",")
            if len(parts) >= 4 and parts[2] == "state":
                out[parts[1]] = parts[3]
        return out

    def _authorize_and_read_host_keys(self, node: Node) -> None:
        pub = sshkeys.public_key(self.state)
        script = (
            "set -e; install -d -m 0700 ~/.ssh; touch ~/.ssh/authorized_keys; chmod 0600 ~/.ssh/authorized_keys; "
            f"grep -qxF {shlex.quote(pub)} ~/.ssh/authorized_keys || echo {shlex.quote(pub)} >> ~/.ssh/authorized_keys; "
            "cat /etc/ssh/ssh_host_*_key.pub"
        )
        res = subprocess.run(["vagrant", "ssh", node.name, "-c", script, "--", "-o", "LogLevel=ERROR"],
                             env=self._env(), cwd=self._cwd(), capture_output=True, text=True, timeout=120)
        keys = [ln.strip() for ln in res.stdout.splitlines() if ln.startswith(("ssh-", "ecdsa-"))]
        if res.returncode != 0 or not keys:
            raise RunFailed(f"node {node.name}: could not authorize the lab key through `vagrant ssh`: "
                            f"{res.stderr.strip()[-500:] or res.stdout.strip()[-500:]}")
        sshkeys.record_host(self.state, reach.node_target(self.lab, node, self.state).known_as, keys)

    def up(self, progress: Progress) -> list[NodeStatus]:
        from labctl.provisioning.inventory import write_inventory

        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        common.require_binary(BINARY[self.vm_provider], INSTALL_HINT[self.vm_provider])
        sshkeys.ensure_keypair(self.state)
        states = self.machine_states()
        todo = [n for n in self.lab.nodes if states.get(n.name) != "running"]
        missing = [n for n in todo if states.get(n.name) in (None, "not_created")]
        if todo:
            common.check_subnet_free(self.lab.network.cidr, None)
            common.check_ips_free_on_host(missing)
            common.check_memory(missing)
            env = self._env(build=True, progress=progress)
            self.state.root.mkdir(parents=True, exist_ok=True)
            (self.state.root / "vm-provider").write_text(self.vm_provider + "\n")
            if self.vm_provider == "libvirt":
                box, lv = self.resolve()["box"], self.resolve()["libvirt"]
                progress(f"vagrant: box {box['name']} {box['version'] or ''}, libvirt driver "
                         f"{lv['driver']}, networks {vagrantfile.lab_network_name(self.lab)} ({self.lab.network.cidr}) "
                         f"and {lv['management_network']['name']} ({lv['management_network']['address']})")
            progress(f"vagrant up --provider {self.vm_provider} {' '.join(n.name for n in todo)}")
            # libvirt: one machine at a time -- vagrant-libvirt's parallel up stalled here with every
            # domain defined and none started (three batch threads waiting on one libvirt connection)
            serial = ["--no-parallel"] if self.vm_provider == "libvirt" else []
            common.run_vagrant(["up", "--provider", self.vm_provider, *serial, *[n.name for n in todo]], env,
                               self._cwd(), timeout=3600, progress=progress)
        targets = reach.node_targets(self.lab, self.state)
        need_keys = [n for n in self.lab.nodes if n in todo or not sshkeys.has_host(self.state, targets[n.name].known_name)]
        if need_keys:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(self._authorize_and_read_host_keys, need_keys))
        results = common.wait_ready(self.lab, targets, timeout=300, progress=progress, sudo=True)
        write_inventory(self.lab, self.lab_file)
        ordered = [results[n.name] for n in self.lab.nodes]
        try:
            common.raise_on_failures(ordered)
        except RunFailed as exc:
            if self.vm_provider != "libvirt":
                raise
            # seen here: VMs whose first `vagrant up` was interrupted run without their hostname and lab
            # network, which vagrant-libvirt sets only when it creates a machine, never on a later up
            raise RunFailed(f"{exc}\nIf a node's lab address does not answer and its first `vagrant up` was "
                            "interrupted, vagrant-libvirt never configured its hostname and lab network (it does "
                            "so only when it creates a machine): `labctl down` then `labctl up` creates it again.") \
                from None
        return ordered

    def down(self, progress: Progress) -> None:
        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        progress("vagrant destroy -f")
        common.run_vagrant(["destroy", "-f"], self._env(), self._cwd(), timeout=1200, progress=progress)
        sshkeys.forget_hosts(self.state, [x for t in reach.node_targets(self.lab, self.state).values()
                                          for x in t.known_as])

    def status(self) -> list[NodeStatus]:
        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        states = self.machine_states()
        return [NodeStatus(n.name, n.role, str(n.ip), states.get(n.name, "not created").replace("_", " "))
                for n in self.lab.nodes]
