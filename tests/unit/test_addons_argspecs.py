"""Each addon role's meta/argument_specs.yml validated against its defaults templated with a
real lab's group_vars -- what Ansible's implicit argument-validation task does when the role
starts on a cluster (ansible.builtin.validate_argument_spec, run here on localhost)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from labctl.model.config import parse_lab
from labctl.provisioning.inventory import group_vars_document
from labctl.state import REPO_ROOT, StateDir

from .conftest import base_lab

ROLES = ["helm", "metrics_server", "ingress", "dashboard", "monitoring"]


def _play(role: str, group_vars: Path) -> dict:
    names = list(yaml.safe_load((REPO_ROOT / "roles" / role / "defaults/main.yml").read_text()))
    return {
        "name": f"Validate the {role} role's arguments",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": True,
        "vars_files": [str(group_vars), str(REPO_ROOT / "roles" / role / "defaults/main.yml"),
                       str(REPO_ROOT / "roles" / role / "vars/main.yml")],
        "vars": {"spec_names": names, "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{
            "name": f"Validate {role}",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": "{{ (lookup('ansible.builtin.file', '%s') | from_yaml).argument_specs.main.options }}"
                                 % (REPO_ROOT / "roles" / role / "meta/argument_specs.yml"),
                "provided_arguments": "{{ dict(spec_names | zip(query('ansible.builtin.vars', *spec_names))) }}",
            },
        }],
    }


def test_role_arguments_validate_for_the_default_and_course_labs(tmp_path):
    plays = []
    for name, version, addons in (("default", "1.37", {}),
                                  ("course", "1.34", {"ingress": "ingress-nginx", "dashboard": "kubernetes-dashboard",
                                                      "dashboard_admin": True})):
        data = base_lab()
        data["kubernetes"]["version"] = version
        data["addons"].update(addons)
        lab_file = tmp_path / f"{name}.yml"
        lab_file.write_text(yaml.safe_dump(data))
        gv = group_vars_document(parse_lab(data), StateDir(lab_file, data["name"]))
        gv = {k: v for k, v in gv.items() if k.startswith("lab_")}
        gv_file = tmp_path / f"{name}-vars.yml"
        gv_file.write_text(yaml.safe_dump(gv))
        plays += [_play(role, gv_file) for role in ROLES]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CACHE_PLUGIN": "memory",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
    failures = [f"{p['play']['name']}: {h.get('msg', h)}"
                for p in out.get("plays", []) for t in p["tasks"] for h in t["hosts"].values() if h.get("failed")]
    assert proc.returncode == 0 and not failures, "\n".join(failures) or proc.stdout[-3000:] + proc.stderr[-3000:]
    validated = [t for p in out["plays"] for t in p["tasks"] if t["task"]["name"].startswith("Validate ")]
    assert len(validated) == 2 * len(ROLES)
