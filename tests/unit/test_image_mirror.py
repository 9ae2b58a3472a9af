"""roles/image_mirror copies registry to registry with skopeo (#12 item 7): no docker pull/tag/push
(it fails with Docker's containerd image store, moby/moby#52897), one skopeo login on the registry host
for the upstream copies and the offline bundle's archives.

The bundle's archives are pushed from the controller when it has skopeo and reaches the lab registry
(tasks/side.yml decides; tasks/bundle-controller.yml pushes), else from the registry host as before:
the task files are read here, the role's own expressions are evaluated by Ansible's templar, and the
decision itself runs in the real ansible-playbook on this machine (a listening socket stands in for
the registry; a stand-in skopeo prints its version)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from .conftest import trusted_template

ROLE = Path(__file__).resolve().parents[2] / "roles/image_mirror"
TASK_FILES = ("main.yml", "side.yml", "bundle.yml", "bundle-controller.yml")


def _tasks(name: str) -> list[dict]:
    out: list[dict] = []

    def walk(tasks: list[dict]) -> None:
        for t in tasks:
            out.append(t)
            for key in ("block", "rescue", "always"):
                walk(t.get(key) or [])
    walk(yaml.safe_load((ROLE / "tasks" / name).read_text()))
    return out


def _argv(task: dict) -> list[str]:
    cmd = task.get("ansible.builtin.command") or {}
    return cmd.get("argv") or []


def test_no_docker_command_in_the_role():
    for name in TASK_FILES:
        for t in _tasks(name):
            argv = _argv(t)
            assert not (argv and argv[0] == "docker"), t["name"]
            assert "ansible.builtin.shell" not in t, t["name"]


def test_upstream_images_are_copied_registry_to_registry():
    (copy,) = [t for t in _tasks("main.yml") if _argv(t)[:2] == ["skopeo", "copy"]]
    argv = _argv(copy)
    assert argv[-2:] == ["docker://{{ item.source }}", "docker://{{ item.mirror }}"]
    assert "--all" not in argv and "--multi-arch" not in argv  # the registry host's (the nodes') platform
    assert copy["loop"] == "{{ image_mirror_from_upstream }}"




def _named(name: str, task: str) -> dict:
    return next(t for t in _tasks(name) if t.get("name") == task)


def _block(name: str, task: dict) -> dict:
    """The block that holds `task` (its delegation, become and vars are the block's)."""
    return next(t for t in _tasks(name) if task in (t.get("block") or []))


CONTROLLER = {"delegate_to": "localhost", "become": False,
              "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}


def _on_controller(task: dict, holder: dict | None = None) -> bool:
    holder = holder or task
    return all(holder.get(k) == v for k, v in CONTROLLER.items())


def test_the_registry_host_logs_in_once_for_its_copies():
    main = _tasks("main.yml")
    (login,) = [t for t in main if _argv(t)[:2] == ["skopeo", "login"]]
    assert "--password-stdin" in _argv(login) and login["no_log"] is True
    login_block = _block("main.yml", login)
    # the registry host needs skopeo for the bundle only when it pushes the bundle itself
    assert login_block["when"] == ("(image_mirror_bundled | length > 0 and not image_mirror_on_controller | bool) "
                                   "or image_mirror_copy_upstream | bool")
    order = [t.get("name") for t in main]
    assert order.index(login["name"]) < order.index("Push the images the lab's offline bundle holds")
    copy = "Copy the missing images from their upstream registries into the lab registry"
    assert order.index(login["name"]) < order.index(copy)
    # the registry host's bundle path still pushes its archives with skopeo, after that login
    assert any(_argv(t)[:2] == ["skopeo", "copy"] and _argv(t)[-1] == "docker://{{ item.mirror }}"
               and _argv(t)[-2].startswith("oci-archive:") for t in _tasks("bundle.yml"))


def test_exactly_one_side_pushes_the_bundle():
    main = {t.get("name"): t for t in _tasks("main.yml")}
    controller = main["Push the images the lab's offline bundle holds, from the controller"]
    host = main["Push the images the lab's offline bundle holds"]
    assert controller["ansible.builtin.include_tasks"] == "bundle-controller.yml"
    assert host["ansible.builtin.include_tasks"] == "bundle.yml"
    assert controller["when"] == "image_mirror_bundled | length > 0 and image_mirror_on_controller | bool"
    assert host["when"] == "image_mirror_bundled | length > 0 and not image_mirror_on_controller | bool"
    side = main["Choose the side that asks the registry and pushes the bundle (the controller when it can)"]
    order = list(main)
    assert order.index(side["name"]) < order.index("Ask the lab registry which images it holds already (from the registry host)")


def test_exactly_one_side_asks_the_registry_and_the_controller_trusts_the_lab_ca():
    host = _named("main.yml", "Ask the lab registry which images it holds already (from the registry host)")
    ctl = _named("main.yml", "Ask the lab registry which images it holds already (from the controller)")
    assert host["when"] == "not image_mirror_on_controller | bool"
    assert ctl["when"] == "image_mirror_on_controller | bool"
    assert _on_controller(ctl) and not host.get("delegate_to")
    assert ctl["ansible.builtin.uri"]["ca_path"] == "{{ image_mirror_ca_cert }}"
    assert ctl["ansible.builtin.uri"]["url"] == "https://{{ image_mirror_controller_registry }}/{{ image_mirror_item_manifest }}"
    assert host["register"] != ctl["register"]  # a skipped task would overwrite the other's answers
    for t in (host, ctl):
        assert t["no_log"] is True and t["failed_when"] is False
        assert t["ansible.builtin.uri"]["method"] == "HEAD"


def test_the_side_is_chosen_on_the_controller_in_bounded_time():
    skopeo = _named("side.yml", "Look for skopeo on the controller")
    reach = _named("side.yml", "Check that the controller reaches the lab registry (TCP)")
    block = _block("side.yml", skopeo)
    assert block == _block("side.yml", reach) and _on_controller(block, block)
    assert block["when"] == "image_mirror_controller | bool"
    assert _argv(skopeo) == ["skopeo", "--version"] and skopeo["changed_when"] is False and skopeo["failed_when"] is False
    wait = reach["ansible.builtin.wait_for"]
    assert wait["timeout"] == wait["connect_timeout"] == "{{ image_mirror_controller_timeout }}"
    assert reach["failed_when"] is False and reach["when"] == "image_mirror_controller_skopeo_found | bool"
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    assert 0 < defaults["image_mirror_controller_timeout"] <= 5


def test_the_controller_pushes_the_archives_where_the_bundle_keeps_them():
    tasks = _tasks("bundle-controller.yml")
    (push,) = [t for t in tasks if _argv(t)[:2] == ["skopeo", "copy"]]
    assert _on_controller(push, _block("bundle-controller.yml", push))
    argv = _argv(push)
    assert argv[-2] == "oci-archive:{{ image_mirror_bundle_archives[item.source] }}"  # no copy, no archive_dir
    assert argv[-1] == "docker://{{ image_mirror_controller_registry }}/{{ image_mirror_item_ref }}"
    assert argv[argv.index("--dest-cert-dir") + 1] == "{{ image_mirror_controller_cert_dir }}"
    assert ("{{ '--dest-authfile=' ~ image_mirror_controller_authfile if image_mirror_auth | bool "
            "else '--dest-no-creds' }}") in argv
    # no credential on the command line; --dest-decompress is for skopeo's dir: transport only (1.9, Debian 12)
    assert not {a for a in argv if a.split("=")[0] in ("--dest-creds", "--dest-password", "--dest-username",
                                                         "--dest-decompress", "--creds")}
    assert not any("password" in a for a in argv)
    assert push["loop"] == "{{ image_mirror_bundled }}" and push["changed_when"] == "image_mirror_controller_push.rc == 0"
    assert not any("image_mirror_archive_dir" in json.dumps(t) for t in tasks)
    assert not [t for t in tasks if "ansible.builtin.copy" in t and "image_mirror_bundle_archives" in json.dumps(t)]
    ca = _named("bundle-controller.yml", "Put the lab CA in it")["ansible.builtin.copy"]
    assert ca == {"src": "{{ image_mirror_ca_cert }}", "dest": "{{ image_mirror_controller_cert_dir }}/ca.crt", "mode": "0644"}
    (login,) = [t for t in tasks if _argv(t)[:2] == ["skopeo", "login"]]
    largv = _argv(login)
    assert largv[largv.index("--authfile") + 1] == "{{ image_mirror_controller_authfile }}"
    assert largv[largv.index("--cert-dir") + 1] == "{{ image_mirror_controller_cert_dir }}"
    assert "--password-stdin" in largv and "password_file" in login["ansible.builtin.command"]["stdin"]
    assert login["no_log"] is True and login["when"] == "image_mirror_auth | bool"


def test_the_controller_login_is_kept_with_the_labs_secrets():
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    assert defaults["image_mirror_controller_authfile"] == "{{ lab_state_dir }}/secrets/registry-auth.json"
    assert defaults["image_mirror_ca_cert"] == "{{ lab_state_dir }}/ca.crt"  # where the pki role makes it
    assert defaults["image_mirror_controller_cert_dir"].startswith("{{ lab_state_dir }}/")


def test_every_task_that_reads_the_password_is_no_log():
    readers = [(name, t) for name in TASK_FILES for t in _tasks(name)
               if "block" not in t and "lookup('ansible.builtin.file', image_mirror_password_file)" in json.dumps(t)]
    assert len(readers) == 4  # two manifest checks, two logins
    assert all(t.get("no_log") is True for _, t in readers), [t["name"] for _, t in readers if not t.get("no_log")]


# -- the role's expressions, evaluated by Ansible's templar ------------------------------------------
LAB_VARS = {
    "lab_registry": {"enabled": True, "name": "registry", "ip": "192.168.56.100", "port": 5000,
                     "address": "registry:5000", "auth": True, "user": "labctl"},
    "lab_state_dir": "/lab/.labctl/k8s-lab",
    "lab_images": [{"source": "registry.k8s.io/pause:3.10.2", "mirror": "registry:5000/pause:3.10.2"},
                   {"source": "ghcr.io/flannel-io/flannel:v0.27.4", "mirror": "registry:5000/flannel-io/flannel:v0.27.4"}],
    "lab_bundle": {"images": [{"ref": "registry.k8s.io/pause:3.10.2", "archive": "/b/images/pause.tar"},
                              {"ref": "ghcr.io/flannel-io/flannel:v0.27.4", "archive": "/b/images/flannel.tar"}]},
    "inventory_hostname": "registry",
}
FOUND = {"rc": 0, "stdout": "skopeo version 1.9.3"}
REACHED = {"state": "started", "port": 5000, "elapsed": 0}
TIMED_OUT = {"failed": False, "failed_when_result": False, "elapsed": 3,
             "msg": "Timeout when waiting for 192.168.56.100:5000"}


def _render(expr: str, **registered):
    variables = dict(LAB_VARS)
    variables |= trusted_template(yaml.safe_load((ROLE / "defaults/main.yml").read_text()))
    variables |= trusted_template(yaml.safe_load((ROLE / "vars/main.yml").read_text()))
    variables |= registered
    return Templar(loader=DataLoader(), variables=variables).template(trusted_template(expr))


@pytest.mark.parametrize(("registered", "on_controller", "reason"), [
    ({"image_mirror_controller_skopeo": FOUND, "image_mirror_controller_reach": REACHED}, True,
     "the controller reaches the lab registry at 192.168.56.100:5000 and has skopeo version 1.9.3"),
    ({"image_mirror_controller_skopeo": FOUND, "image_mirror_controller_reach": TIMED_OUT}, False,
     "the controller cannot reach the lab registry at 192.168.56.100:5000 (Timeout when waiting for 192.168.56.100:5000)"),
    ({"image_mirror_controller_skopeo": {"rc": 2, "msg": "[Errno 2] No such file or directory: b'skopeo'"},
      "image_mirror_controller_reach": {"skipped": True}}, False,
     "skopeo is not installed on the controller (scripts/setup installs it)"),
    ({"image_mirror_controller": False, "image_mirror_controller_skopeo": {"skipped": True},
      "image_mirror_controller_reach": {"skipped": True}}, False, "image_mirror_controller is false"),
    ({}, False, "skopeo is not installed on the controller (scripts/setup installs it)"),  # the checks never ran
])
def test_the_side_and_its_reason(registered, on_controller, reason):
    assert _render("{{ image_mirror_on_controller | bool }}", **registered) is on_controller
    assert _render("{{ image_mirror_path_reason }}", **registered) == reason


def test_the_controller_addresses_the_registry_by_its_lab_ip_under_the_mirrors_name():
    """The host part of a reference is not stored: pushed to <ip>:<port>/<path>:<tag>, the image is
    what the nodes pull as <name>:<port>/<path>:<tag>."""
    assert _render("{{ image_mirror_controller_registry }}") == "192.168.56.100:5000"
    argv = [a for a in _argv(_named("bundle-controller.yml", "Push each archive into the lab registry from the controller"))]
    item = LAB_VARS["lab_images"][1] | {}
    got = [_render(a, item=item) for a in argv[-3:]]
    assert got == ["--dest-authfile=/lab/.labctl/k8s-lab/secrets/registry-auth.json", "oci-archive:/b/images/flannel.tar",
                   "docker://192.168.56.100:5000/flannel-io/flannel:v0.27.4"]
    no_auth = LAB_VARS["lab_registry"] | {"auth": False}
    assert _render(argv[-3], item=item, lab_registry=no_auth) == "--dest-no-creds"
    ask = _named("main.yml", "Ask the lab registry which images it holds already (from the controller)")
    url = ask["ansible.builtin.uri"]["url"]
    assert _render(url, item=item) == "https://192.168.56.100:5000/v2/flannel-io/flannel/manifests/v0.27.4"


def test_the_missing_images_come_from_the_side_that_asked():
    answers = {"results": [{"item": LAB_VARS["lab_images"][0], "status": 200},
                           {"item": LAB_VARS["lab_images"][1], "status": 404}]}
    skipped = {"results": [{"item": i, "skipped": True} for i in LAB_VARS["lab_images"]], "skipped": True}
    on = {"image_mirror_controller_skopeo": FOUND, "image_mirror_controller_reach": REACHED}
    off = {"image_mirror_controller_skopeo": FOUND, "image_mirror_controller_reach": TIMED_OUT}
    want = [LAB_VARS["lab_images"][1]]
    assert _render("{{ image_mirror_bundled }}", **on, image_mirror_present_controller=answers,
                   image_mirror_present=skipped) == want
    assert _render("{{ image_mirror_bundled }}", **off, image_mirror_present=answers,
                   image_mirror_present_controller=skipped) == want


# -- the decision, run by the real ansible-playbook on this machine -------------------------------------
def _side(tmp_path: Path, port: int, path: str, **extra) -> dict:
    """Run tasks/side.yml on localhost (its controller); return {task name: result}."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    lab_vars = {"lab_registry": {"enabled": True, "name": "registry", "ip": "127.0.0.1", "port": port,
                                 "address": f"registry:{port}", "auth": True, "user": "labctl"},
                "lab_state_dir": str(state), "lab_images": LAB_VARS["lab_images"],
                "image_mirror_controller_timeout": 1, **extra}
    book = tmp_path / "side.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "vars": lab_vars, "tasks": [
        {"name": "side", "ansible.builtin.include_role": {"name": str(ROLE), "tasks_from": "side.yml"}}]}],
        sort_keys=False))
    env = {**os.environ, "PATH": path, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    exe = str(Path(sys.executable).parent / "ansible-playbook")
    exe = exe if Path(exe).exists() else "ansible-playbook"
    r = subprocess.run([exe, "-i", "localhost,", "-c", "local", str(book)],
                       env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout)
    return {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"]["localhost"] for p in out["plays"] for t in p["tasks"]}


def _path_with_skopeo(tmp_path: Path) -> str:
    bin_dir = tmp_path / "with-skopeo"
    bin_dir.mkdir()
    fake = bin_dir / "skopeo"
    fake.write_text("#!/bin/sh\necho 'skopeo version 1.9.3-stand-in'\n")
    fake.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def _path_without_skopeo(tmp_path: Path) -> str:
    """Every command of this machine's PATH but skopeo (ansible's local connection needs sh, mkdir, ...)."""
    bin_dir = tmp_path / "without-skopeo"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for f in os.listdir(d):
            link = bin_dir / f
            if f != "skopeo" and not link.exists() and not link.is_symlink():
                link.symlink_to(Path(d) / f)
    return str(bin_dir)


SAY = "Say which side pushes the images and why"


def test_the_controller_pushes_when_it_reaches_the_registry_and_has_skopeo(tmp_path: Path):
    with socket.socket() as registry:
        registry.bind(("127.0.0.1", 0))
        registry.listen()
        port = registry.getsockname()[1]
        res = _side(tmp_path, port, _path_with_skopeo(tmp_path))
    msg = res[SAY]["msg"]
    assert msg.startswith("the controller asks the lab registry which images it holds and pushes the offline "
                          "bundle's archives from here (nothing is copied to localhost)"), msg
    assert msg.endswith(f"the controller reaches the lab registry at 127.0.0.1:{port} and has skopeo version 1.9.3-stand-in")
    assert not any(r.get("changed") for r in res.values())


def test_the_registry_host_pushes_when_the_controller_cannot_reach_the_registry(tmp_path: Path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _side(tmp_path, port, _path_with_skopeo(tmp_path))
    msg = res[SAY]["msg"]
    assert msg.startswith("the registry host localhost asks the lab registry"), msg
    assert f"the controller cannot reach the lab registry at 127.0.0.1:{port} (Timeout when waiting for" in msg
    assert res["Check that the controller reaches the lab registry (TCP)"]["elapsed"] <= 3


def test_the_registry_host_pushes_when_the_controller_has_no_skopeo(tmp_path: Path):
    with socket.socket() as registry:
        registry.bind(("127.0.0.1", 0))
        registry.listen()
        res = _side(tmp_path, registry.getsockname()[1], _path_without_skopeo(tmp_path))
    assert res[SAY]["msg"].endswith(": skopeo is not installed on the controller (scripts/setup installs it)")
    assert res["Check that the controller reaches the lab registry (TCP)"].get("skipped") is True
