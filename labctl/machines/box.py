"""labctl's own Vagrant box `labctl/debian12` (libvirt; VirtualBox checked structurally), built locally.

Vagrant's public box registry is going away, so the VM lab's default box is made here, from
Debian's own packages, the way the container lab's node image is (machines/image.py):

- mmdebstrap makes a Debian 12 root file system from the host's Debian mirror with a kernel
  (linux-image-cloud-amd64), systemd, openssh-server, sudo, python3, ifupdown + isc-dhcp-client
  (eth0 on DHCP; `net.ifnames=0`), udev, initramfs-tools, kmod, GRUB's BIOS images, and the
  Debian packages labctl's host/runtime/registry/nfs roles install at provision time (read from
  the roles' own vars, one list: image.prepared_packages, plus systemd-timesyncd, the IPVS tools
  and firewalld), so a first provision is mostly configuration, not dpkg, under emulation. The
  services those roles start themselves stay disabled (a first provision still enables them).
- the `vagrant` user with Vagrant's insecure public key (Vagrant replaces it at the first up)
  and NOPASSWD sudo; no SSH host keys and an empty machine-id in the image (each VM makes its
  own at first boot); a swap file in fstab, made at first boot and active from then on, as a
  real install has one (labctl's swap step turns it off).
- the disk: an MBR with one ext4 partition made by `mkfs.ext4 -d rootfs` (no loop mount, no
  root-only mount), GRUB's boot.img in the MBR and a core.img (made by grub-mkimage inside the
  root file system) in the gap after it; its embedded config boots /vmlinuz with /initrd.img by
  the file system's UUID. A boot loader on the disk rather than libvirt's direct kernel boot:
  QEMU runs as libvirt-qemu and cannot read a kernel inside Vagrant's box directory under a
  0700 home; the same disk also boots in VirtualBox (no direct kernel boot there), and a kernel
  upgraded inside the VM is the one that boots next.
- the libvirt box: a tar.gz of metadata.json, box.img (qcow2, `qemu-img convert`) and a
  Vagrantfile. The VirtualBox box (`--provider virtualbox`): the same disk as a VMDK, an OVF
  and metadata.json.

Cached like the node image: ~/.cache/labctl/boxes/<flavour>-<provider>-<hash>.box where <hash>
covers the whole recipe; the box is added to Vagrant as `labctl/debian12` with version
BOX_VERSION_PREFIX.<decimal of the hash> through a local catalog (box.json), so a changed
recipe is a new version beside the old one (vagrant-libvirt keeps one pool volume per version)
and the lab pins the exact version it was built for. A second build is a no-op.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from labctl.errors import RunFailed, UserError
from labctl.machines import common, image
from labctl.state import REPO_ROOT

BOX_NAME = "labctl/debian12"
FLAVOUR = "debian12"
SUITE = "bookworm"
DISK_GB = 20
SWAP_MB = 1024
PROVIDERS = ("libvirt", "virtualbox")

# The VM's own packages (boot, network, login); the roles' packages are added (ROLE_PACKAGES).
PACKAGES = (
    "linux-image-cloud-amd64", "systemd-sysv", "dbus", "openssh-server", "sudo", "python3",
    "iproute2", "ifupdown", "isc-dhcp-client", "udev", "initramfs-tools", "kmod", "grub-pc-bin",
    "ca-certificates", "e2fsprogs", "procps", "netbase", "less", "zstd", "util-linux",
)
# Where the roles' Debian package lists are: every list of names `*_packages` in these files
# (so a renamed or added list is still baked in). base installs without recommends, the
# others through ansible.builtin.package (apt's default, with recommends).
ROLE_PACKAGE_FILES = (
    ("base", "vars/Debian.yml", False),         # base_os_packages, base_os_timesync_packages (VMs)
    ("kernel", "defaults/main.yml", True),      # kernel_ipvs_packages (proxy_mode ipvs)
    ("containerd", "vars/Debian.yml", True),
    ("docker", "vars/Debian.yml", True),
    ("registry", "vars/Debian.yml", True),
    ("nfs", "vars/Debian.yml", True),
    ("kubernetes_packages", "vars/main.yml", True),  # the OS tools kubeadm needs beside the bundle's binaries
)
# named in the roles' tasks: the firewall role's (host.firewall: ports), the images phase's skopeo
EXTRA_ROLE_PACKAGES = ("firewalld", "skopeo")

# Started by the roles on the nodes that need them: disabled in the box, like the node image.
DISABLED = ("containerd.service", "docker.service", "docker.socket", "docker-registry.service",
            "nfs-server.service", "firewalld.service")

# Vagrant's well-known insecure public key (Vagrant swaps it for a new key pair at the first up).
VAGRANT_INSECURE_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2Y"
    "J6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7Ptix"
    "WKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4L"
    "OzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key"
)

FIRSTBOOT = """\
#!/bin/sh
# labctl-firstboot: this VM's own SSH host keys, and the swap file fstab names (a real install has swap).
set -eu
ssh-keygen -A
if [ ! -e /swapfile ]; then
    fallocate -l {swap_mb}M /swapfile
    chmod 0600 /swapfile
    mkswap /swapfile >/dev/null
fi
"""

FIRSTBOOT_UNIT = """\
[Unit]
Description=labctl first boot: SSH host keys, the swap file
DefaultDependencies=no
After=systemd-remount-fs.service local-fs.target
Before=ssh.service swapfile.swap swap.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/labctl-firstboot

[Install]
WantedBy=multi-user.target
RequiredBy=swapfile.swap
"""

INTERFACES = """\
# labctl box: eth0 on DHCP (Vagrant's management network); Vagrant appends the lab's network below.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
"""

# Vagrant's Debian hostname step (plugins/guests/debian/cap/change_host_name.rb, on systemd without
# networkd or NetworkManager) restarts every NIC with `systemctl start ifup@<nic>` -- the lab's NIC too,
# before its network step has written that NIC's configuration. Debian's unit then fails (`ifquery
# --state` of an unconfigured interface) and stays failed: every VM `degraded`. An interface that
# /etc/network/interfaces does not name is not ifupdown's to bring up, so for it the unit succeeds
# doing nothing; a named interface runs exactly Debian's command.
IFUP_DROPIN = """\
# labctl box: an interface /etc/network/interfaces does not name is not a failure (Vagrant starts
# ifup@<nic> for every NIC before it has configured the lab's)
[Service]
ExecStart=
ExecStart=/bin/sh -ec 'if ifquery %I >/dev/null 2>&1; then ifup --allow=hotplug %I; ifquery --state %I; fi'
"""

SSHD_CONFIG = """\
# labctl box
UseDNS no
PasswordAuthentication no
KbdInteractiveAuthentication no
"""

SUDOERS = "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n"

# Runs on the host with the root file system as $1 and the staging directory as $2.
CUSTOMIZE = """\
#!/bin/sh
set -eu
root="$1"; stage="$2"
export DEBIAN_FRONTEND=noninteractive
chroot "$root" useradd -m -s /bin/bash -U vagrant
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$stage/authorized_keys" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
install -m 0440 "$stage/sudoers" "$root/etc/sudoers.d/vagrant"
install -m 0644 "$stage/interfaces" "$root/etc/network/interfaces"
install -D -m 0644 "$stage/ifup-dropin.conf" "$root/etc/systemd/system/ifup@.service.d/labctl.conf"
install -m 0644 "$stage/fstab" "$root/etc/fstab"
install -m 0644 "$stage/sshd-labctl.conf" "$root/etc/ssh/sshd_config.d/labctl.conf"
install -m 0755 "$stage/labctl-firstboot" "$root/usr/local/sbin/labctl-firstboot"
install -m 0644 "$stage/labctl-firstboot.service" "$root/etc/systemd/system/labctl-firstboot.service"
echo debian > "$root/etc/hostname"
printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\tdebian\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > "$root/etc/hosts"
chroot "$root" systemctl enable labctl-firstboot.service ssh.service systemd-timesyncd.service
for unit in $(cat "$stage/disabled"); do chroot "$root" systemctl disable "$unit" 2>/dev/null || true; done
# no periodic apt work racing the roles' apt runs on a fresh lab
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer
rm -f "$root"/etc/ssh/ssh_host_*
rm -f "$root/etc/apt/sources.list"
rm -f "$root"/etc/apt/sources.list.d/*
cp "$stage"/apt/* "$root/etc/apt/sources.list.d/"
chmod 0644 "$root"/etc/apt/sources.list.d/*
# GRUB's core image, booting /vmlinuz from the root file system by its UUID (no menu, no wait)
chroot "$root" grub-mkimage -O i386-pc -o /boot/labctl-core.img -c /boot/labctl-grub.cfg -p /boot/grub \\
    biosdisk part_msdos ext2 search search_fs_uuid linux echo
cp "$root/usr/lib/grub/i386-pc/boot.img" "$root/boot/labctl-boot.img"
test -e "$root/vmlinuz" && test -e "$root/initrd.img"
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/*
"""

GRUB_CFG = """\
search --no-floppy --fs-uuid --set=root {uuid}
linux /vmlinuz root=UUID={uuid} ro {cmdline}
initrd /initrd.img
boot
"""
# tsc=reliable: under QEMU's emulation (TCG) the kernel's TSC synchronisation check fails at boot
# ("Marking TSC unstable due to TSCs unsynchronized") and it falls back to the emulated HPET, where
# every clock read is a system call plus an MMIO access QEMU serialises: measured in a TCG guest,
# clock_gettime 1363 ns on the HPET, 82 ns on the TSC, and Go programs (every Kubernetes component)
# read the clock constantly. TCG's TSC is the host's, one counter for every vCPU. Under KVM the
# kernel still prefers kvm-clock; VirtualBox guests use the TSC as before.
CMDLINE = "console=tty0 console=ttyS0,115200 net.ifnames=0 biosdevname=0 tsc=reliable"

BOX_VAGRANTFILE = """\
# labctl/debian12 ({provider}): a Debian 12 box built by `labctl box build` (labctl/machines/box.py).
# The disk boots by itself (GRUB in the MBR); console on ttyS0.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
  config.vm.provider :virtualbox do |vb|
    vb.customize ["modifyvm", :id, "--uart1", "0x3F8", "4", "--uartmode1", "disconnected"]
  end
end
"""


def _fs_uuid(h: str) -> str:
    """The root file system's UUID, fixed by the recipe (so the GRUB config is part of the recipe)."""
    return str(uuid.UUID(hashlib.sha256(f"labctl-box-{h}".encode()).hexdigest()[:32]))


def role_packages(roles_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(without recommends, with recommends): what the roles install, the way they install it."""
    import yaml

    norec: list[str] = []
    rec: list[str] = []
    for role, rel, recommends in ROLE_PACKAGE_FILES:
        path = (roles_dir or REPO_ROOT / "roles") / role / rel
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise RunFailed(f"the box reads the roles' packages from {path}: {exc}") from None
        for key, value in data.items():
            if not (key.endswith("_packages") and isinstance(value, list)):
                continue
            for pkg in value:
                if isinstance(pkg, str) and "{" not in pkg and pkg not in norec and pkg not in rec:
                    (rec if recommends else norec).append(pkg)
    rec += [p for p in EXTRA_ROLE_PACKAGES if p not in norec and p not in rec]
    return norec, rec


def recipe() -> dict[str, object]:
    sources = image.host_apt_sources()
    norec, rec = role_packages()
    return {
        "suite": SUITE,
        "mirror": image.bootstrap_mirror(sources),
        "packages": list(PACKAGES),
        "role_packages_no_recommends": norec,
        "role_packages": rec,
        "disabled": list(DISABLED),
        "disk_gb": DISK_GB,
        "swap_mb": SWAP_MB,
        "cmdline": CMDLINE,
        "files": {
            "authorized_keys": VAGRANT_INSECURE_KEY + "\n",
            "sudoers": SUDOERS,
            "interfaces": INTERFACES,
            "ifup-dropin.conf": IFUP_DROPIN,
            "sshd-labctl.conf": SSHD_CONFIG,
            "labctl-firstboot": FIRSTBOOT.format(swap_mb=SWAP_MB),
            "labctl-firstboot.service": FIRSTBOOT_UNIT,
            "customize.sh": CUSTOMIZE,
            "grub.cfg": GRUB_CFG,
            "Vagrantfile": BOX_VAGRANTFILE,
        },
        "apt": sources,
    }


def recipe_hash(r: dict[str, object] | None = None) -> str:
    return image.recipe_hash(r if r is not None else recipe())


def box_version(h: str) -> str:
    """The Vagrant box version of a recipe: Vagrant wants numbers, so the hash's first 8 hex digits in decimal."""
    return f"12.0.{int(h[:8], 16)}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl" / "boxes"


def box_path(provider: str, h: str) -> Path:
    return cache_dir() / f"{FLAVOUR}-{provider}-{h}.box"


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def installed(provider: str, h: str) -> bool:
    """Is labctl/debian12 at this recipe's version added to Vagrant for this provider?"""
    d = vagrant_home() / "boxes" / BOX_NAME.replace("/", "-VAGRANTSLASH-") / box_version(h) / provider
    return (d / "metadata.json").is_file() and (d / "labctl-recipe").is_file() \
        and (d / "labctl-recipe").read_text().strip() == h


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _run(argv: list[str], what: str, timeout: float, on_line: Callable[[str], None] | None = None,
         env: dict[str, str] | None = None) -> None:
    common.run_streamed(argv, what, timeout, on_line, env)


def _require_tools() -> None:
    hint = "apt-get install -y mmdebstrap qemu-utils e2fsprogs (or run scripts/setup)"
    for tool in ("mmdebstrap", "qemu-img", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise UserError(f"building the box needs {tool}: {hint}")
    if os.geteuid() != 0:
        raise UserError("building the box needs root (mmdebstrap's root mode keeps the files' owners "
                        "for mkfs.ext4 -d); run it with sudo")


def _stage(r: dict[str, object], where: Path, fs_uuid: str) -> None:
    image.write_recipe_files(r, where)
    (where / "disabled").write_text("\n".join(DISABLED) + "\n")
    (where / "fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n")
    (where / "grub.cfg").write_text(GRUB_CFG.format(uuid=fs_uuid, cmdline=CMDLINE))


def _make_disk(rootfs: Path, raw: Path, fs_uuid: str, timeout: float, on_line: Callable[[str], None]) -> None:
    """raw: an MBR disk of DISK_GB with one ext4 partition (from rootfs) at 1 MiB and GRUB in front (no fdisk needed)."""
    offset = 1024 * 1024
    size = DISK_GB * 1024 ** 3
    with raw.open("wb") as f:
        f.truncate(size)
    fs_kb = (size - offset) // 1024
    on_line(f"mkfs.ext4 -d rootfs ({DISK_GB} GiB disk, sparse)")
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", fs_uuid, "-E", f"offset={offset}", "-d", str(rootfs),
          str(raw), f"{fs_kb}k"], "mkfs.ext4 -d", timeout)
    # the partition table: one bootable Linux partition from sector 2048 to the end (LBA only)
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", offset // 512,
                        (size - offset) // 512)
    boot_img = (rootfs / "boot" / "labctl-boot.img").read_bytes()
    core_img = (rootfs / "boot" / "labctl-core.img").read_bytes()
    if len(core_img) > offset - 512:
        raise RunFailed(f"GRUB's core image ({len(core_img)} bytes) does not fit before the partition")
    with raw.open("r+b") as f:
        f.seek(0)
        f.write(boot_img[:440])  # the boot code (boot.img's own, unused partition table is not copied)
        f.seek(446)
        f.write(entry + b"\0" * 48 + b"\x55\xaa")
        f.seek(512)
        f.write(core_img)  # core.img at sector 1 (boot.img's default), its blocklist follows it


def _tar(out: Path, members: dict[str, Path], on_line: Callable[[str], None]) -> None:
    on_line(f"packing {out.name}")
    tmp = out.with_suffix(".tmp")
    # gzip level 1: the qcow2 is already sparse; a higher level costs minutes for a few percent
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for name, path in members.items():
            tar.add(path, arcname=name)
    tmp.rename(out)


def _ovf(name: str, disk_bytes: int, vmdk: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References><File ovf:id="file1" ovf:href="{vmdk}"/></References>
  <DiskSection>
    <Info>Virtual disk</Info>
    <Disk ovf:capacity="{disk_bytes}" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>Networks</Info><Network ovf:name="NAT"><Description>NAT</Description></Network></NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>labctl Debian 12 box</Info>
    <OperatingSystemSection ovf:id="96"><Info>Debian 64-bit</Info>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
      <Item><rasd:Caption>1 virtual CPU</rasd:Caption><rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:Caption>1024 MB of memory</rasd:Caption>
        <rasd:ElementName>1024 MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:Caption>sataController0</rasd:Caption><rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection><rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:Caption>disk1</rasd:Caption><rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def build(provider: str = "libvirt", rebuild: bool = False, on_line: Callable[[str], None] = lambda _l: None,
          timeout: float = 3600, add: bool = True) -> tuple[Path, str, bool]:
    """Build labctl/debian12 for `provider` unless cached, and add it to Vagrant; return (box file, version, built)."""
    if provider not in PROVIDERS:
        raise UserError(f"--provider: found {provider!r}; allowed: {', '.join(PROVIDERS)}")
    r = recipe()
    h = recipe_hash(r)
    out = box_path(provider, h)
    version = box_version(h)
    built = False
    if rebuild or not out.is_file():
        _require_tools()
        out.parent.mkdir(parents=True, exist_ok=True)
        # one build at a time per cache (two `labctl up` of new labs at once build it once)
        with open(out.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if rebuild or not out.is_file():
                _build(provider, r, h, out, timeout, on_line)
                built = True
    if add and (built or not installed(provider, h)):
        add_to_vagrant(out, provider, h, on_line)
    return out, version, built


def _build(provider: str, r: dict[str, object], h: str, out: Path, timeout: float,
           on_line: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    fs_uuid = _fs_uuid(h)
    out.parent.mkdir(parents=True, exist_ok=True)
    # large temporary files (the root file system, a sparse raw disk) beside the cache, not in a tmpfs /tmp
    with tempfile.TemporaryDirectory(prefix="build-", dir=out.parent) as tmp:
        t = Path(tmp)
        stage = t / "stage"
        stage.mkdir()
        _stage(r, stage, fs_uuid)
        rootfs = t / "rootfs"
        norec, rec = r["role_packages_no_recommends"], r["role_packages"]
        assert isinstance(norec, list) and isinstance(rec, list)
        include = ",".join([*PACKAGES, *norec])
        # the roles' packages with their recommends (as the roles' package tasks install them);
        # grub.cfg goes in before grub-mkimage reads it (customize.sh)
        hooks = [
            "--customize-hook=chroot \"$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            f"-o APT::Install-Recommends=true {' '.join(rec)}",
            f"--customize-hook=cp {stage}/grub.cfg \"$1\"/boot/labctl-grub.cfg",
            f"--customize-hook=sh {stage}/customize.sh \"$1\" {stage}",
        ]
        on_line(f"building {BOX_NAME} {box_version(h)} ({provider}) with mmdebstrap from {r['mirror']}: "
                f"{len(PACKAGES)} base + {len(norec) + len(rec)} role packages")
        # mmdebstrap keeps services from starting in the chroot (its own policy-rc.d)
        _run(["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={include}", "--components=main",
              "--format=directory", *hooks, SUITE, str(rootfs), str(r["mirror"])],
             "mmdebstrap", max(60, deadline - time.monotonic()), on_line)
        raw = t / "disk.raw"
        _make_disk(rootfs, raw, fs_uuid, max(60, deadline - time.monotonic()), on_line)
        shutil.copy2(rootfs / "vmlinuz", t / "vmlinuz")  # kept beside the box: the KVM probe boots it
        (t / "labctl-recipe").write_text(h + "\n")
        (t / "Vagrantfile").write_text(BOX_VAGRANTFILE.format(provider=provider))
        if provider == "libvirt":
            on_line("qemu-img convert -O qcow2")
            _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(t / "box.img")], "qemu-img convert",
                 max(60, deadline - time.monotonic()))
            (t / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2",
                                                         "virtual_size": DISK_GB}))
            members = {n: t / n for n in ("metadata.json", "box.img", "Vagrantfile", "labctl-recipe")}
        else:
            on_line("qemu-img convert -O vmdk (streamOptimized)")
            vmdk = "box-disk001.vmdk"
            _run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(t / vmdk)],
                 "qemu-img convert", max(60, deadline - time.monotonic()))
            (t / "box.ovf").write_text(_ovf(f"labctl-{FLAVOUR}", DISK_GB * 1024 ** 3, vmdk))
            (t / "metadata.json").write_text(json.dumps({"provider": "virtualbox"}))
            members = {n: t / n for n in ("metadata.json", "box.ovf", vmdk, "Vagrantfile", "labctl-recipe")}
        shutil.rmtree(rootfs)
        raw.unlink()
        _tar(out, members, on_line)
        shutil.copy2(t / "vmlinuz", kernel_path(h))
    _remove_outdated(provider, out)
    on_line(f"built {out}")


def kernel_path(h: str) -> Path:
    return cache_dir() / f"{FLAVOUR}-vmlinuz-{h}"


def newest_kernel() -> Path | None:
    """The kernel of the newest box built here (for the KVM probe), if any."""
    found = sorted(cache_dir().glob(f"{FLAVOUR}-vmlinuz-*"), key=lambda p: p.stat().st_mtime) \
        if cache_dir().is_dir() else []
    return found[-1] if found else None


def _remove_outdated(provider: str, keep: Path) -> None:
    """Box files of older recipes for this provider (the Vagrant boxes stay: `vagrant box prune`)."""
    for p in cache_dir().glob(f"{FLAVOUR}-{provider}-*.box"):
        if p != keep and re.fullmatch(rf"{FLAVOUR}-{provider}-[0-9a-f]{{12}}\.box", p.name):
            p.unlink(missing_ok=True)


def add_to_vagrant(box: Path, provider: str, h: str, on_line: Callable[[str], None]) -> None:
    """`vagrant box add` through a local catalog: labctl/debian12 at this recipe's version."""
    catalog = box.with_suffix(".json")
    catalog.write_text(json.dumps({
        "name": BOX_NAME,
        "description": "Debian 12 built by labctl box build",
        "versions": [{"version": box_version(h),
                      "providers": [{"name": provider, "url": box.resolve().as_uri()}]}],
    }, indent=1))
    on_line(f"vagrant box add {BOX_NAME} {box_version(h)} ({provider})")
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
    # run beside the box, not in the caller's directory: Vagrant loads any Vagrantfile it finds there
    common.run_streamed(["vagrant", "box", "add", "--force", "--provider", provider, "--box-version",
                         box_version(h), str(catalog)], "vagrant box add", 1800, on_line, env, cwd=box.parent)
