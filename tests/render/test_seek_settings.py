"""SEEK's first administrator and settings from the inventory (issue 20, item 8).

Rendered: the seek-settings Secret (the passwords, and only there), ConfigMap (the script, no
value) and Job (SEEK's functions, then `rails runner` of the script, exec'd; the passwords from the
Secret as environment; a name from what it applies); the web and workers pods carry the Job's name.
Run: roles/seek/files/seek-settings.rb under Ruby against stand-ins of SEEK's classes
(seek_settings_standin.rb): it creates the first administrator once, applies the settings, and a
second run changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.render.conftest import Rendered
from tests.render.harness import CONFIGS, Config, load_manifests, render

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "seek" / "files" / "seek-settings.rb"
STANDIN = Path(__file__).parent / "seek_settings_standin.rb"
JOB_NAME = re.compile(r"^seek-settings-[0-9a-f]{10}$")


def _settings_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].startswith("seek-settings-")]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_settings_objects_are_rendered(rendered: Rendered) -> None:
    """Secret, ConfigMap and Job; the Job applies the inventory's values, the passwords come from
    the Secret, the script from the ConfigMap; web and workers carry the Job's name."""
    job = _settings_job(rendered.objects())
    name = job["metadata"]["name"]
    assert JOB_NAME.match(name), name
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"  # MySQL and Solr admit it
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = [line.strip() for line in container["command"][2].splitlines() if line.strip()]
    assert container["command"][:2] == ["bash", "-c"]
    assert script[-1] == "exec bundle exec rails runner /etc/seek-settings/settings.rb"
    assert [script.index(s) for s in (". docker/shared_functions.sh", "use_mysql_db", "wait_for_mysql")] \
        == sorted(script.index(s) for s in (". docker/shared_functions.sh", "use_mysql_db", "wait_for_mysql"))
    env = _env(container)
    tls = rendered.config.extra["seek_tls"] != "none"
    assert env["SEEK_SITE_BASE_HOST"] == ("https://" if tls else "http://") + "seek.example.org"
    assert env["SEEK_ADMIN_LOGIN"] == "admin" and env["SEEK_ADMIN_EMAIL"] == "admin@example.org"  # the lab example
    assert env["SEEK_REGISTRATION_OPEN"] == "false" and env["SEEK_SMTP_ADDRESS"] == ""
    assert env["SEEK_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "seek-settings", "key": "admin-password"}}
    assert env["SEEK_SMTP_PASSWORD"] == {"secretKeyRef": {"name": "seek-settings", "key": "smtp-password"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/seek/filestore", "/seek/tmp/cache", "/etc/seek-settings"} <= set(mounts)  # key, settings cache
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["settings-script"]["configMap"]["name"] == "seek-settings"
    configmap = rendered.get("ConfigMap", "seek-settings")
    assert configmap["data"] == {"settings.rb": SCRIPT.read_text().rstrip("\n")}  # the file lookup strips it
    secret = rendered.get("Secret", "seek-settings")
    assert set(secret["data"]) == {"admin-password", "smtp-password"}
    for deployment in ("seek-web", "seek-workers"):
        annotations = rendered.get("Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["seek-k3s/settings"] == name, deployment
    rendered.get("Ingress", "seek")


def test_generated_admin_password_is_private_and_only_in_the_secret(rendered: Rendered) -> None:
    """No vault_seek_admin_password: one is generated into the artifacts (0600), the Secret holds it,
    and it is in no other object, in clear or in base64."""
    path = rendered.artifacts / "seek-admin-password"
    password = path.read_text().strip()
    assert len(password) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = rendered.get("Secret", "seek-settings")
    assert base64.b64decode(secret["data"]["admin-password"]).decode() == password
    encoded = base64.b64encode(password.encode()).decode()
    for file, obj in rendered.manifests:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == "seek-settings":
            continue
        text = file.read_text()
        assert password not in text and encoded not in text, file.name


SMTP = {"vault_seek_admin_password": "Admin-Pass-From-Vault-1", "seek_admin_login": "seekadmin",
        "seek_admin_email": "seek-admin@example.org", "seek_registration_open": True,
        "seek_smtp_address": "smtp.example.org", "seek_smtp_port": 587, "seek_smtp_user_name": "seek",
        "vault_seek_smtp_password": "smtp-secret-value-1", "seek_smtp_authentication": "plain",
        "seek_smtp_enable_starttls_auto": True}


def _render(tmp_path: Path, name: str, extra: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    base = CONFIGS["single-localpath-nginx-notls"]
    out = render(tmp_path / name, Config(name=name, cluster=base.cluster, extra={**base.extra, **extra}))
    return load_manifests(out)


def test_settings_from_the_vault_and_smtp(tmp_path: Path) -> None:
    """Vault passwords reach the Secret only; the SMTP settings and open registration reach the
    Job's environment; the same settings rendered again give the same Job name, another value
    another name."""
    first = _render(tmp_path, "first", SMTP)
    again = _render(tmp_path, "again", SMTP)
    other = _render(tmp_path, "other", {**SMTP, "seek_smtp_port": 25})
    objects = [obj for _, obj in first]
    job = _settings_job(objects)
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert env["SEEK_ADMIN_LOGIN"] == "seekadmin" and env["SEEK_ADMIN_EMAIL"] == "seek-admin@example.org"
    assert env["SEEK_REGISTRATION_OPEN"] == "true"
    assert env["SEEK_SMTP_ADDRESS"] == "smtp.example.org" and env["SEEK_SMTP_PORT"] == "587"
    assert env["SEEK_SMTP_USER_NAME"] == "seek" and env["SEEK_SMTP_AUTHENTICATION"] == "plain"
    assert env["SEEK_SMTP_ENABLE_STARTTLS_AUTO"] == "true"
    assert env["SEEK_NOREPLY_SENDER"] == "no-reply@seek.example.org"
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "seek-settings")
    assert base64.b64decode(secret["data"]["admin-password"]).decode() == SMTP["vault_seek_admin_password"]
    assert base64.b64decode(secret["data"]["smtp-password"]).decode() == SMTP["vault_seek_smtp_password"]
    for file, obj in first:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == "seek-settings":
            continue
        for key in ("vault_seek_admin_password", "vault_seek_smtp_password"):
            assert SMTP[key] not in file.read_text(), (file.name, key)
    assert not (tmp_path / "first" / "inventory" / "artifacts" / "seek-admin-password").exists()
    assert _settings_job([o for _, o in again])["metadata"]["name"] == job["metadata"]["name"]
    assert _settings_job([o for _, o in other])["metadata"]["name"] != job["metadata"]["name"]


# --- The script, run under Ruby against stand-ins of SEEK's classes -----------------------------

PASSWORD = "first-admin-password"
ENV = {"SEEK_ADMIN_LOGIN": "admin", "SEEK_ADMIN_EMAIL": "admin@seek.test", "SEEK_ADMIN_PASSWORD": PASSWORD,
       "SEEK_SITE_BASE_HOST": "https://seek.test", "SEEK_REGISTRATION_OPEN": "false",
       "SEEK_SMTP_ADDRESS": "smtp.seek.test", "SEEK_SMTP_PORT": "587", "SEEK_SMTP_DOMAIN": "",
       "SEEK_SMTP_USER_NAME": "mailer", "SEEK_SMTP_PASSWORD": "smtp-password-1",
       "SEEK_SMTP_AUTHENTICATION": "login", "SEEK_SMTP_ENABLE_STARTTLS_AUTO": "false",
       "SEEK_NOREPLY_SENDER": "no-reply@seek.test"}

needs_ruby = pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (tests/host-packages.txt)")


def _run(db: Path, **overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SEEK_")}
    env.update({**ENV, **overrides, "SETTINGS_STANDIN_DB": str(db)})
    return subprocess.run(["ruby", "-r", str(STANDIN), str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _state(db: Path) -> dict[str, Any]:
    return json.loads(db.read_text())


@needs_ruby
def test_script_creates_the_first_admin_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "seek.json"
    first = _run(db)
    assert first.returncode == 0, first.stderr
    state = _state(db)
    (user,) = state["users"]
    (person,) = state["people"]
    assert user["login"] == "admin" and user["active"] and user["person_id"] == person["id"]
    assert person["admin"] and person["email"] == "admin@seek.test"
    settings = state["settings"]
    assert settings["site_base_host"] == "https://seek.test" and settings["registration_disabled"] is True
    assert settings["email_enabled"] is True and settings["noreply_sender"] == "no-reply@seek.test"
    assert settings["smtp"] == {"address": "smtp.seek.test", "port": "587", "domain": None,
                                "authentication": "login", "user_name": "mailer", "password": "smtp-password-1",
                                "enable_starttls_auto": None}
    assert "administrator admin created" in first.stdout
    writes = list(state["writes"])
    second = _run(db)
    assert second.returncode == 0, second.stderr
    assert "seek-settings: nothing to change" in second.stdout
    assert "administrator admin exists; left as it is" in second.stdout
    assert _state(db)["writes"] == writes and len(_state(db)["users"]) == 1
    for run in (first, second):
        for secret in (PASSWORD, "smtp-password-1"):
            assert secret not in run.stdout + run.stderr


@needs_ruby
def test_script_changes_only_what_changed_and_never_an_existing_password(tmp_path: Path) -> None:
    db = tmp_path / "seek.json"
    assert _run(db).returncode == 0
    crypted = _state(db)["users"][0]["crypted_password"]
    writes = len(_state(db)["writes"])
    changed = _run(db, SEEK_SITE_BASE_HOST="https://seek.example.org", SEEK_ADMIN_PASSWORD="another-password-2")
    assert changed.returncode == 0, changed.stderr
    assert "seek-settings: changed: site_base_host" in changed.stdout
    assert _state(db)["writes"][writes:] == ["site_base_host"]
    assert _state(db)["users"][0]["crypted_password"] == crypted


@needs_ruby
def test_script_refuses_an_existing_login_that_is_not_admin(tmp_path: Path) -> None:
    db = tmp_path / "seek.json"
    assert _run(db, SEEK_ADMIN_LOGIN="first").returncode == 0  # the first admin
    assert _run(db, SEEK_ADMIN_LOGIN="", SEEK_ADMIN_EMAIL="").returncode == 0
    state = _state(db)
    state["users"].append({"login": "someone", "crypted_password": "x", "active": True, "person_id": 2})
    state["people"].append({"id": 2, "first_name": "someone", "email": "someone@seek.test", "admin": False})
    db.write_text(json.dumps(state))
    refused = _run(db, SEEK_ADMIN_LOGIN="someone")
    assert refused.returncode == 1
    assert "the account someone exists and is not an administrator" in refused.stderr
    assert not _state(db)["people"][1]["admin"]


@needs_ruby
def test_script_creates_no_second_admin_and_leaves_email_alone_without_smtp(tmp_path: Path) -> None:
    db = tmp_path / "seek.json"
    assert _run(db, SEEK_ADMIN_LOGIN="first", SEEK_SMTP_ADDRESS="").returncode == 0
    assert "smtp" not in _state(db)["settings"] and "email_enabled" not in _state(db)["settings"]
    other = _run(db, SEEK_ADMIN_LOGIN="second", SEEK_ADMIN_EMAIL="second@seek.test", SEEK_SMTP_ADDRESS="")
    assert other.returncode == 0, other.stderr
    assert "SEEK has 1 administrator(s) already: second is not created" in other.stdout
    assert [u["login"] for u in _state(db)["users"]] == ["first"]
    empty = _run(db, SEEK_ADMIN_LOGIN="", SEEK_SMTP_ADDRESS="")
    assert "seek_admin_login is empty: no administrator is created" in empty.stdout


@needs_ruby
def test_script_leaves_nothing_behind_when_the_admin_is_refused(tmp_path: Path) -> None:
    """A password SEEK refuses (too short) fails the run and creates no user or person."""
    db = tmp_path / "seek.json"
    failed = _run(db, SEEK_ADMIN_PASSWORD="short")
    assert failed.returncode != 0
    assert "Password is too short" in failed.stderr and "short\n" not in failed.stdout
    state = _state(db)
    assert state["users"] == [] and state["people"] == []


def test_lab_example_names_the_vault_variables() -> None:
    """The lab inventory shows the settings, the vault example the two passwords (placeholders)."""
    seek = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "seek.yml").read_text())
    assert seek["seek_admin_password"] == "{{ vault_seek_admin_password | default('') }}"
    assert seek["seek_smtp_password"] == "{{ vault_seek_smtp_password | default('') }}"
    vault = (REPO / "inventories" / "lab" / "group_vars" / "all" / "vault.yml.example").read_text()
    assert 'vault_seek_admin_password: ""' in vault and 'vault_seek_smtp_password: ""' in vault
