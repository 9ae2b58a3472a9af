"""The images phase pushes an offline bundle's archive from the controller into the container lab's real
registry (roles/image_mirror, tasks/bundle-controller.yml): the controller reaches the registry on the
docker bridge and has skopeo, so nothing is copied to the registry node; the second run pushes nothing.

One tiny image, made here with umoci and skopeo as `labctl bundle build` makes its archives, stands in
for the bundle (extra vars replace lab_images and lab_bundle for this run only). The module is named to
run after test_provision (whose first run must be a first install); it brings the lab to its registry
phase itself, so it also runs alone.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from labctl.model.config import load_lab
from labctl.model.facts import LabFacts
from labctl.provisioning.inventory import write_inventory
from labctl.provisioning.runner import run_playbook
from labctl.state import StateDir
from tests.integration.conftest import ContainerLab

pytestmark = pytest.mark.integration

PROVISION_TIMEOUT = 1800


def _run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}{r.stderr}"


def _tiny_archive(tmp: Path, ref: str) -> Path:
    """An OCI archive of one small linux/amd64 image named `ref`, as the bundle writes them."""
    for tool in ("umoci", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup installs it)")
    layer = tmp / "layer.tar"
    data = f"labctl push test {ref}\n".encode()
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    layout = tmp / "layout"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:img")
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:img", str(layer))
    _run("umoci", "config", "--image", f"{layout}:img", "--os", "linux", "--architecture", "amd64")
    archive = tmp / "tiny.tar"
    _run("skopeo", "copy", "--quiet", f"oci:{layout}:img", f"oci-archive:{archive}:{ref}")
    return archive


def _task_results(events: list[dict], task: str) -> list[dict]:
    return [e["event_data"] for e in events
            if e.get("event") == "runner_on_ok" and e.get("event_data", {}).get("task") == task]


@pytest.fixture(scope="module")
def at_registry(container_lab: ContainerLab) -> ContainerLab:
    res = container_lab.run("provision", "--until", "registry", "--no-progress", timeout=PROVISION_TIMEOUT)
    assert res.returncode == 0, f"provision --until registry failed (exit {res.returncode}):\n{res.stderr[-4000:]}"
    return container_lab


def test_the_bundle_is_pushed_from_the_controller(at_registry: ContainerLab, tmp_path: Path) -> None:
    lab = load_lab(at_registry.lab_file)
    registry = LabFacts.from_lab(lab).registry
    state = StateDir(at_registry.lab_file, lab.name)
    hosts = write_inventory(lab, at_registry.lab_file)
    tag = secrets.token_hex(4)  # a new image each session: the first run really pushes
    ref = f"docker.io/labctl-it/tiny:{tag}"
    mirror = f"{registry.address}/labctl-it/tiny:{tag}"
    archive = _tiny_archive(tmp_path, ref)
    extravars = {"lab_images": [{"source": ref, "mirror": mirror, "group": "test"}],
                 "lab_bundle": {"images": [{"ref": ref, "archive": str(archive)}]}}

    first = run_playbook(state, "images.yml", hosts, extravars=extravars)
    assert first.rc == 0, json.dumps(first.stats)
    (said,) = _task_results(first.events, "Say which side pushes the images and why")
    assert said["res"]["msg"].startswith("the controller asks the lab registry"), said["res"]["msg"]
    pushed = [e["event_data"]["res"] for e in first.events if e.get("event") == "runner_item_on_ok"
              and e["event_data"].get("task") == "Push each archive into the lab registry from the controller"]
    assert [(p["changed"], p["_ansible_delegated_vars"]["ansible_host"]) for p in pushed] == [(True, "localhost")]
    assert not [e for e in first.events if e.get("event") in ("runner_on_ok", "runner_item_on_ok")
                and e["event_data"].get("task") == "Copy the bundle's archives of the missing images"]

    # nothing was copied to the registry node, and the controller's login is the lab's secret
    node = at_registry.container(registry.name)
    r = subprocess.run(["docker", "exec", node, "sh", "-c", f"ls /var/cache/labctl/images/{archive.name}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    authfile = state.secrets_dir / "registry-auth.json"
    assert authfile.stat().st_mode & 0o777 == 0o600
    assert (state.root / "registry-certs" / "ca.crt").read_bytes() == state.ca_cert.read_bytes()

    # the image is in the registry under the mirror's repository and tag
    r = subprocess.run(["skopeo", "inspect", "--cert-dir", str(state.root / "registry-certs"),
                        "--authfile", str(authfile), f"docker://{registry.ip}:{registry.port}/labctl-it/tiny:{tag}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Architecture"] == "amd64"

    second = run_playbook(state, "images.yml", hosts, extravars=extravars)
    assert second.rc == 0, json.dumps(second.stats)
    assert sum((second.stats.get("changed") or {}).values()) == 0, second.stats
