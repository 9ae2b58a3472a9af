"""labctl's own modules (collections/ansible_collections/labctl/lab), run by the real
ansible-playbook on this machine (connection local) against a temporary directory."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from labctl.state import REPO_ROOT


def play(tmp_path: Path, tasks: list[dict[str, Any]], *args: str, name: str = "play") -> dict[str, Any]:
    """Run `tasks` on localhost; return {task name: result} (the last host result of each task)."""
    book = tmp_path / f"{name}.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], sort_keys=False))
    env = {**os.environ,
           "ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(book), *args],
                       env=env, capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout)
    return {t["task"]["name"]: t["hosts"]["localhost"] for p in out["plays"] for t in p["tasks"]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_creates_compares_and_repairs(tmp_path: Path) -> None:
    base = tmp_path / "etc"
    tpl = tmp_path / "templates"
    tpl.mkdir()
    (tpl / "conf.j2").write_text("name = {{ who }}\n")
    secret = "s3cr3t-registry-password"
    task = {"name": "files", "labctl.lab.files": {
        "directories": [str(base / "a" / "b"), {"path": str(base / "c"), "mode": "0750"}],
        "directory_mode": "0755",
        "files": [
            {"dest": str(base / "a" / "b" / "conf"), "template": str(tpl / "conf.j2"), "mode": "0644"},
            {"dest": str(base / "c" / "key"), "content": f"password = {secret}\n", "mode": "0600", "diff": False},
            {"dest": str(base / "c" / "ca.crt"), "src": str(tpl / "conf.j2"), "mode": "0644"},
        ]}, "vars": {"who": "lab"}}
    first = play(tmp_path, [task])["files"]
    assert first["changed"] is True
    assert (base / "a" / "b" / "conf").read_text() == "name = lab\n"
    assert (base / "c" / "key").read_text() == f"password = {secret}\n"
    assert (base / "c" / "ca.crt").read_text() == "name = {{ who }}\n"  # src: copied, not rendered
    assert mode(base / "c" / "key") == 0o600 and mode(base / "c") == 0o750 and mode(base / "a" / "b") == 0o755
    assert {c["path"] for c in first["changed_paths"]} >= {str(base / "c" / "key"), str(base / "a" / "b")}

    again = play(tmp_path, [task])["files"]
    assert again["changed"] is False and again["changed_paths"] == []

    # drift: content, mode; --check --diff reports and changes nothing
    (base / "a" / "b" / "conf").write_text("name = other\n")
    (base / "c" / "key").write_text("password = old\n")
    os.chmod(base / "c" / "ca.crt", 0o666)
    checked = play(tmp_path, [task], "--check", "--diff")["files"]
    assert checked["changed"] is True
    assert (base / "a" / "b" / "conf").read_text() == "name = other\n" and mode(base / "c" / "ca.crt") == 0o666
    whats = {c["path"]: c["what"] for c in checked["changed_paths"]}
    assert whats == {str(base / "a" / "b" / "conf"): ["content"], str(base / "c" / "key"): ["content"],
                     str(base / "c" / "ca.crt"): ["mode"]}
    assert [d["before"] for d in checked["diff"]] == ["name = other\n"]  # the key file: diff false
    assert [d["after"] for d in checked["diff"]] == ["name = lab\n"]

    fixed = play(tmp_path, [task], "--diff")["files"]
    assert fixed["changed"] is True
    assert (base / "a" / "b" / "conf").read_text() == "name = lab\n" and mode(base / "c" / "ca.crt") == 0o644
    assert (base / "c" / "key").read_text() == f"password = {secret}\n" and mode(base / "c" / "key") == 0o600
    # the module's arguments (every file's text) never come back to callbacks or logs
    for result in (first, again, checked, fixed):
        assert "invocation" not in result
        assert secret not in json.dumps(result)


def test_files_attributes_only_and_errors(tmp_path: Path) -> None:
    target = tmp_path / "htpasswd"
    target.write_text("user:hash\n")
    os.chmod(target, 0o644)
    results = play(tmp_path, [
        {"name": "attributes", "labctl.lab.files": {"files": [{"dest": str(target), "mode": "0640"}]}},
        {"name": "two sources", "labctl.lab.files": {"files": [{"dest": str(tmp_path / "x"), "content": "a",
                                                                "src": str(target)}]},
         "ignore_errors": True},
        {"name": "no directory", "labctl.lab.files": {"files": [{"dest": str(tmp_path / "nope" / "x"),
                                                                 "content": "a"}]},
         "ignore_errors": True},
        {"name": "missing file", "labctl.lab.files": {"files": [{"dest": str(tmp_path / "absent"), "mode": "0600"}]},
         "ignore_errors": True},
        {"name": "unknown key", "labctl.lab.files": {"files": [{"dest": str(tmp_path / "y"), "content": "a",
                                                                "mdoe": "0600"}]},
         "ignore_errors": True},
    ])
    assert results["attributes"]["changed"] is True and target.read_text() == "user:hash\n" and mode(target) == 0o640
    assert results["two sources"]["failed"] and "files[0]" in results["two sources"]["msg"]
    assert "template, src or content" in results["two sources"]["msg"]
    assert results["no directory"]["failed"] and "does not exist" in results["no directory"]["msg"]
    assert str(tmp_path / "nope") in results["no directory"]["msg"]
    assert results["missing file"]["failed"] and str(tmp_path / "absent") in results["missing file"]["msg"]
    assert results["unknown key"]["failed"] and "mdoe" in results["unknown key"]["msg"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_host_state_reads_without_changing(tmp_path: Path) -> None:
    small = tmp_path / "fstab"
    small.write_text("UUID=1 none swap sw 0 0\n")
    result = play(tmp_path, [{"name": "state", "labctl.lab.host_state": {
        "packages": ["dpkg", "labctl-no-such-package"],
        "sysctls": ["kernel.ostype", "labctl.no.such.key"],
        "kernel_modules": ["labctl_no_such_module"],
        "paths": [str(small), str(tmp_path / "absent")],
        "read": [str(small), str(tmp_path / "absent")],
    }}], "--check")["state"]
    assert result["changed"] is False
    assert result["packages_missing"] == ["labctl-no-such-package"]
    dpkg_version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dpkg"], capture_output=True, text=True).stdout
    assert result["packages_installed"] == {"dpkg": dpkg_version}
    assert result["sysctls"] == {"kernel.ostype": "Linux", "labctl.no.such.key": None}
    assert result["kernel_modules_present"] == []
    assert result["paths"] == {str(small): True, str(tmp_path / "absent"): False}
    assert result["files"] == {str(small): "UUID=1 none swap sw 0 0\n", str(tmp_path / "absent"): None}
    assert result["hostname"]["transient"] == socket.gethostname()
