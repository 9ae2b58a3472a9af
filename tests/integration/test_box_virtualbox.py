"""labctl/debian12 for VirtualBox: built here, checked as VirtualBox would read it, booted from its disk.

VirtualBox cannot run on the machines this project is built on, so the box is checked structurally
(what `vagrant box add` and VirtualBox's OVF import read: metadata.json, the OVF envelope and the
streamOptimized VMDK it references) and its disk is booted the way VirtualBox boots it -- BIOS, the
MBR's GRUB, no direct kernel boot -- by QEMU (software emulation), to the login prompt on the serial
console. `labctl box build --provider virtualbox --no-add` builds it from Debian's packages (about 5
minutes cold; cached per recipe like the libvirt box).

Marker `integration`; needs mmdebstrap, qemu-img and qemu-system-x86_64 (scripts/setup).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
MEMBERS = {"metadata.json", "box.ovf", "box-disk001.vmdk", "Vagrantfile", "labctl-recipe"}
BOOT_TIMEOUT = 240  # seconds to the login prompt under emulation (measured ~30 s)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    missing = [t for t in ("mmdebstrap", "qemu-img", "qemu-system-x86_64") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup installs them)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "labctl", "box", "build", "--provider", "virtualbox", "--no-add"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    path = subprocess.run([sys.executable, "-m", "labctl", "box", "path", "--provider", "virtualbox"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path_factory.mktemp("vbox")
    with tarfile.open(path) as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
        assert names == MEMBERS, f"{path}: members {sorted(names)}"
        tar.extractall(out, filter="data")
    return {n: out / n for n in MEMBERS}


def test_metadata_names_the_virtualbox_provider(box: dict[str, Path]) -> None:
    assert json.loads(box["metadata.json"].read_text()) == {"provider": "virtualbox"}


def test_vmdk_is_stream_optimized_and_its_size_is_the_ovf_capacity(box: dict[str, Path]) -> None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(box["box-disk001.vmdk"])],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    root = ET.parse(box["box.ovf"]).getroot()
    disk = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert disk is not None
    assert int(disk.get(f"{OVF}capacity", "0")) == info["virtual-size"]
    assert disk.get(f"{OVF}format", "").endswith("#streamOptimized")


def test_ovf_references_the_disk_on_a_sata_controller(box: dict[str, Path]) -> None:
    root = ET.parse(box["box.ovf"]).getroot()
    files = {f.get(f"{OVF}id"): f.get(f"{OVF}href") for f in root.iter(f"{OVF}File")}
    disk = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert disk is not None
    assert files[disk.get(f"{OVF}fileRef")] == "box-disk001.vmdk"
    items = {i.findtext(f"{RASD}InstanceID"): i for i in root.iter(f"{OVF}Item")}
    by_type = {i.findtext(f"{RASD}ResourceType"): i for i in items.values()}
    hdd = by_type["17"]  # a hard disk
    assert hdd.findtext(f"{RASD}HostResource") == f"/disk/{disk.get(f'{OVF}diskId')}"
    controller = items[hdd.findtext(f"{RASD}Parent")]
    assert controller.findtext(f"{RASD}ResourceType") == "20"  # SATA (AHCI)
    assert by_type["3"].findtext(f"{RASD}VirtualQuantity")  # CPUs
    assert by_type["4"].findtext(f"{RASD}VirtualQuantity")  # memory
    assert by_type["10"] is not None  # a NAT adapter: Vagrant's SSH


def test_the_boxs_vagrantfile_parses(box: dict[str, Path]) -> None:
    if not shutil.which("ruby"):
        pytest.skip("ruby is not installed (it comes with vagrant)")
    res = subprocess.run(["ruby", "-c", str(box["Vagrantfile"])], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_disk_boots_by_itself_to_a_login_prompt(box: dict[str, Path], tmp_path: Path) -> None:
    """BIOS -> the MBR's GRUB -> the kernel on the disk (what VirtualBox does), on QEMU's emulated CPU."""
    console = tmp_path / "console.log"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-smp", "1", "-m", "1024", "-nodefaults",
         "-display", "none", "-snapshot", "-drive", f"file={box['box-disk001.vmdk']},format=vmdk,if=ide",
         "-serial", f"file:{console}", "-no-reboot"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        text = ""
        while time.monotonic() < deadline and qemu.poll() is None:
            text = console.read_text(errors="replace") if console.exists() else ""
            if "login:" in text:
                break
            time.sleep(2)
        assert "login:" in text, (f"no login prompt within {BOOT_TIMEOUT} s (qemu rc={qemu.poll()}); "
                                  f"console tail:\n{text[-2000:]}")
        assert "Debian GNU/Linux 12" in text
    finally:
        qemu.kill()
        qemu.wait(timeout=30)
