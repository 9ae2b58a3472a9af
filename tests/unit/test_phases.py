"""Phase selection (--phase / --until), play -> phase mapping, and site.yml's imports."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.errors import UserError
from labctl.provisioning.phases import PHASES, select
from labctl.provisioning.provision import check_imports, limit_nodes, play_phases
from labctl.state import REPO_ROOT
from tests.unit.conftest import base_lab, run_labctl, write_lab

PLAYBOOKS = Path(__file__).parent / "data" / "playbooks"


@pytest.mark.parametrize(("phase", "until", "expected"), [
    (None, None, list(PHASES)),
    ("runtime", None, ["runtime"]),
    ("registry,host", None, ["host", "registry"]),          # always in PHASES order
    (" host , runtime ,", None, ["host", "runtime"]),
    (None, "host", ["host"]),
    (None, "registry", ["host", "runtime", "registry"]),
    (None, "addons", list(PHASES)),
])
def test_select(phase, until, expected):
    assert select(phase, until) == expected


@pytest.mark.parametrize(("phase", "until", "message"), [
    ("hosts", None, "--phase: unknown phase(s) hosts; allowed: host, runtime"),
    (None, "kube", "--until: unknown phase 'kube'"),
    ("host", "runtime", "--phase and --until"),
])
def test_select_errors(phase, until, message):
    with pytest.raises(UserError) as exc:
        select(phase, until)
    assert message in str(exc.value)


def test_site_yml_imports_the_phases_in_order():
    doc = yaml.safe_load((REPO_ROOT / "playbooks" / "site.yml").read_text())
    assert [e["ansible.builtin.import_playbook"] for e in doc] == [f"{p}.yml" for p in PHASES]


def test_play_phases_from_play_tags():
    assert play_phases(PLAYBOOKS / "toy.yml") == {"Toy host phase": "host", "Toy runtime phase": "runtime"}


def test_a_missing_imported_playbook_is_named_before_ansible_starts(tmp_path: Path):
    check_imports(REPO_ROOT / "playbooks" / "site.yml")  # every phase playbook exists
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "site.yml").write_text("---\n" + "".join(
        f"- name: Phase {p}\n  ansible.builtin.import_playbook: {p}.yml\n" for p in PHASES))
    for p in PHASES:
        if p != "registry":
            (books / f"{p}.yml").write_text("---\n")
    with pytest.raises(UserError, match=r"site.yml imports .*/registry.yml, which does not exist"):
        check_imports(books / "site.yml")


def test_limit_accepts_nodes_and_groups_and_names_unknown_nodes(tmp_path: Path):
    from labctl.model.config import parse_lab

    lab = parse_lab(base_lab())
    assert limit_nodes(lab, None) == ["master", "node", "registry"]
    assert limit_nodes(lab, "node") == ["node"]
    assert limit_nodes(lab, "workers,registry") == ["node", "registry"]
    assert limit_nodes(lab, "k8s_cluster") == ["master", "node"]
    with pytest.raises(UserError, match="no node named 'nod'"):
        limit_nodes(lab, "nod")


@pytest.mark.parametrize(("args", "message"), [
    (["--phase", "hosts"], "unknown phase(s) hosts"),
    (["--until", "nope"], "unknown phase 'nope'"),
    (["--limit", "nod"], "no node named 'nod'"),
    (["--forks", "0"], "--forks: found 0"),
])
def test_cli_bad_selection_exits_2_before_anything_runs(tmp_path: Path, args, message):
    lab = write_lab(tmp_path, base_lab())
    r = run_labctl("provision", "--lab", str(lab), *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "inventory").exists() and not (tmp_path / ".labctl").exists()


def test_cli_bad_lab_exits_2_and_touches_nothing(tmp_path: Path):
    data = base_lab()
    data["nodes"][0]["ip"] = "10.9.9.9"
    lab = write_lab(tmp_path, data)
    r = run_labctl("provision", "--lab", str(lab), cwd=tmp_path)
    assert r.returncode == 2 and "nodes[0].ip" in r.stderr
    assert not (tmp_path / ".labctl").exists() and not (tmp_path / "inventory").exists()


def test_cli_lab_not_up_says_run_labctl_up_first(tmp_path: Path):
    lab = write_lab(tmp_path, base_lab())
    r = run_labctl("provision", "--lab", str(lab), "--phase", "host", cwd=tmp_path)
    assert r.returncode == 2
    assert "run `labctl up` first" in r.stderr


def test_cli_nodes_down_are_named_before_ansible_starts(tmp_path: Path):
    data = base_lab()
    data["network"]["cidr"] = "192.0.2.0/24"  # TEST-NET-1: nothing answers there
    for i, n in enumerate(data["nodes"]):
        n["ip"] = f"192.0.2.{10 + i}"
    lab = write_lab(tmp_path, data)
    ssh = tmp_path / ".labctl" / "k8s-lab" / "ssh"
    ssh.mkdir(parents=True)
    (ssh / "known_hosts").write_text("192.0.2.10 ssh-ed25519 AAAA\n")
    (ssh / "id_ed25519").write_text("not a key\n")
    r = run_labctl("provision", "--lab", str(lab), "--limit", "node", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "not answering on ssh (port 22): node (192.0.2.11)" in r.stderr
    assert "master" not in r.stderr.split("not answering", 1)[1]  # --limit: only the selected node is checked
    assert not list((tmp_path / ".labctl" / "k8s-lab" / "logs").glob("provision-*"))
