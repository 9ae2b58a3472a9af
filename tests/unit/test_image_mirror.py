"""roles/image_mirror copies registry to registry with skopeo (#12 item 7): no docker pull/tag/push
(it fails with Docker's containerd image store, moby/moby#52897), one skopeo login for both the
upstream copies and the offline bundle's archives."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles/image_mirror"


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
    for name in ("main.yml", "bundle.yml"):
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


def test_one_skopeo_login_serves_both_paths():
    main, bundle = _tasks("main.yml"), _tasks("bundle.yml")
    logins = [t for t in main + bundle if _argv(t)[:2] == ["skopeo", "login"]]
    assert len(logins) == 1 and logins[0] in main
    assert "--password-stdin" in _argv(logins[0]) and logins[0]["no_log"] is True
    order = [t.get("name") for t in main]
    login_block = next(t for t in main if logins[0] in (t.get("block") or []))
    assert login_block["when"] == "image_mirror_bundled | length > 0 or image_mirror_copy_upstream | bool"
    assert order.index(logins[0]["name"]) < order.index("Push the images the lab's offline bundle holds")
    copy = "Copy the missing images from their upstream registries into the lab registry"
    assert order.index(logins[0]["name"]) < order.index(copy)
    # the bundle path still pushes its archives with skopeo, after that login
    assert any(_argv(t)[:2] == ["skopeo", "copy"] and _argv(t)[-1] == "docker://{{ item.mirror }}"
               and _argv(t)[-2].startswith("oci-archive:") for t in bundle)
