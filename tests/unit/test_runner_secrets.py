"""Secret hygiene: redaction of events, and a real run whose state dir holds the secret only under secrets/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from labctl.provisioning.provision import REDACTED, Redactor
from tests.unit.conftest import run_labctl, write_lab

PLAYBOOK = Path(__file__).parent / "data" / "playbooks" / "secret-local.yml"

LOCAL_LAB = {
    "name": "sec-lab",
    "provider": "existing",
    "os": "debian12",
    "network": {"cidr": "192.168.65.0/24"},
    "nodes": [
        {"name": "cp", "role": "control-plane", "ip": "192.168.65.10", "cpus": 2, "memory_mb": 2048,
         "ssh_host": "127.0.0.1", "ssh_user": "root"},
        {"name": "reg", "role": "registry", "ip": "192.168.65.12", "cpus": 1, "memory_mb": 1024,
         "ssh_host": "127.0.0.1", "ssh_user": "root"},
    ],
    "kubernetes": {"version": "1.37", "proxy_mode": "nftables"},
}


def test_redactor_replaces_secrets_in_nested_values_and_keys():
    r = Redactor(["s3cr3t-value-xyz\n", "abc"])  # values shorter than 6 are not redacted (false hits)
    ev = {"stdout": "pw=s3cr3t-value-xyz!", "event_data": {"res": {"results": [{"cmd": ["echo", "s3cr3t-value-xyz"]}],
                                                                  "s3cr3t-value-xyz": 1, "msg": "abc"}}}
    r(ev)
    assert ev["stdout"] == f"pw={REDACTED}!"
    assert ev["event_data"]["res"]["results"][0]["cmd"] == ["echo", REDACTED]
    assert REDACTED in ev["event_data"]["res"] and ev["event_data"]["res"]["msg"] == "abc"


def test_redactor_catches_a_password_inside_base64_auth():
    """config.json's auth is base64(user:password): whatever the user name's length, the password's part
    of the encoding is a needle (#12 item 6, the kubelet's registry credentials)."""
    import base64
    pw = "Zq8w3ErT5yU7iO9pAs2dF4gH"
    r = Redactor([pw])
    for user in ("labctl", "ab", "abc", "x"):
        auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
        assert REDACTED in r.text(f'{{"auths": {{"registry:5000": {{"auth": "{auth}"}}}}}}'), user


def test_redactor_catches_a_pem_key_line_by_line():
    body = "MC4CAQAwBQYDK2VwBCIEIKxQ5Yb2Xw1mN4qZr7Tt0Jp8sVh3LcUe6dFgHiJkLmNo"
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    r = Redactor([key])
    assert r.text(f"oops: {body[:64]}") == f"oops: {REDACTED}"
    assert r.text(key).count(REDACTED) == 1


def test_real_run_leaves_the_secret_only_under_secrets(tmp_path: Path):
    """A real ansible-playbook run (connection local) that reads registry-password with no_log and leaks it
    on purpose in a debug message and in stderr: no file of the state dir but secrets/ holds it, nor the
    terminal output; the event log shows the redaction."""
    lab = write_lab(tmp_path, LOCAL_LAB)
    r = run_labctl("provision", "--lab", str(lab), "--playbook", str(PLAYBOOK), "--phase", "host",
                   "--no-progress", "--json", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    state = tmp_path / ".labctl" / "sec-lab"
    secret = (state / "secrets" / "registry-password").read_text().strip()
    assert (state / "secrets" / "registry-password").stat().st_mode & 0o777 == 0o600
    assert (state / "secrets" / "grafana-admin-password").stat().st_mode & 0o777 == 0o600
    # the play did use the secret
    assert (tmp_path / "registry-password.copy").read_text().strip() == secret
    result = json.loads(r.stdout)
    log = Path(result["log_path"])
    assert log.stat().st_mode & 0o777 == 0o600
    assert f"the password is {REDACTED}" in log.read_text()
    files = [p for p in state.rglob("*") if p.is_file() and "secrets" not in p.relative_to(state).parts]
    assert len(files) > 3 and any("artifacts" in p.parts for p in files)
    leaks = [str(p) for p in files if secret in p.read_text(errors="replace")]
    assert leaks == []
    assert secret not in r.stdout + r.stderr
    rows = [line.split("\t") for line in Path(result["tasks_path"]).read_text().splitlines()]
    assert rows[0] == ["phase", "play", "task", "host", "status", "changed", "seconds"]
    # the other phase's `always` task did not run (--skip-tags for the phases not selected)
    assert {r[0] for r in rows[1:]} == {"host"} and len(rows) == 4


def test_public_key_material_is_not_a_needle(tmp_path: Path):
    """A private key's PEM embeds its public key: lines shared with a certificate must not count as leaks."""
    from labctl.state import StateDir

    shared = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2"
    private_only = "cHJpdmF0ZS1vbmx5LXByaXZhdGUtb25seS1wcml2YXRlLW9ubHktcHJpdmF0ZQ"
    state = StateDir(write_lab(tmp_path, LOCAL_LAB), "sec-lab")
    state.ensure()
    (state.secrets_dir / "registry.key").write_text(
        f"-----BEGIN PRIVATE KEY-----\n{private_only}\n{shared}\n-----END PRIVATE KEY-----\n")
    (state.secrets_dir / "registry.csr").write_text(f"-----BEGIN CERTIFICATE REQUEST-----\n{shared}\n-----END")
    (state.root / "registry.crt").write_text(f"-----BEGIN CERTIFICATE-----\n{shared}\n-----END CERTIFICATE-----\n")
    needles = Redactor.for_state(state).needles
    assert private_only in needles
    assert shared not in needles


def test_secrets_created_during_a_run_are_learned_and_scrubbed(tmp_path: Path):
    from labctl.provisioning.provision import StateRedactor
    from labctl.state import StateDir

    state = StateDir(write_lab(tmp_path, LOCAL_LAB), "sec-lab")
    state.ensure()
    redact = StateRedactor(state)
    ev = {"stdout": "token=late-secret-value-123"}
    assert redact(dict(ev)) == ev  # not a secret yet
    (state.secrets_dir / "join-token").write_text("late-secret-value-123")
    os.utime(state.secrets_dir, (time.time() + 5, time.time() + 5))  # coarse mtime clocks
    assert redact(dict(ev)) == {"stdout": f"token={REDACTED}"}
    log = state.logs_dir / "x.jsonl"
    log.write_text('{"stdout": "late-secret-value-123"}\n')
    os.chmod(log, 0o600)
    assert Redactor.for_state(state).scrub_file(log)
    assert "late-secret" not in log.read_text() and log.stat().st_mode & 0o777 == 0o600
