"""The `dockyard` CLI against a real `dockyard serve` with auth on, run as a user runs it, with its own
HOME, so each test has its own `~/.config/dockyard/cli.json` (in this process: tests/support/cli.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import dockyard_cert
from tests.support.cli import run_dockyard
from tests.support.oci import write_oci_layout
from tests.support.ociclient import OCIClient
from tests.support.server import RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN_PASSWORD = "cli-admin-password-1"
AUTH_ON = {"auth": {"enabled": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("cli-server"), AUTH_ON, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    yield running
    running.stop()


@dataclass
class Cli:
    """`dockyard` as one person at one machine: its own HOME, hence its own stored login."""

    home: Path

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "dockyard" / "cli.json"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "DOCKYARD_SERVER")}
        env.update(HOME=str(self.home), COLUMNS="200")
        return run_dockyard(*args, input=stdin, env=env)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"dockyard {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", stdin=stdin))

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """The one error line of a command that must fail (exit 1, nothing on stdout, no traceback)."""
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 1, f"expected exit 1 from dockyard {' '.join(args)}: {result}"
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dockyard: "), result.stderr
        return lines[0]

    def login(self, url: str, username: str, password: str, *extra: str) -> str:
        return self.ok("login", url, "-u", username, "--password-stdin", *extra, stdin=password + "\n")

    def stored(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.config_file.read_text())
        return document


def make_cli(tmp_path: Path, name: str) -> Cli:
    home = tmp_path / name
    home.mkdir()
    return Cli(home)


@pytest.fixture
def admin(server: RunningServer, tmp_path: Path) -> Cli:
    cli = make_cli(tmp_path, "admin-home")
    cli.login(server.url, "admin", ADMIN_PASSWORD)
    return cli


def new_user(admin: Cli, tmp_path: Path, server: RunningServer, username: str) -> Cli:
    password = f"{username}-password-9"
    admin.ok("user", "create", username, "--password-stdin", stdin=password + "\n")
    cli = make_cli(tmp_path, f"{username}-home")
    cli.login(server.url, username, password)
    return cli


def me_with(server: RunningServer, username: str, secret: str) -> int:
    return httpx.get(f"{server.url}/api/v1/me", auth=(username, secret), timeout=HTTP_TIMEOUT).status_code


# --- login ---------------------------------------------------------------------------------------
def test_login_keeps_a_working_token_never_the_password(server: RunningServer, tmp_path: Path) -> None:
    cli = make_cli(tmp_path, "home")
    said = cli.login(server.url, "admin", ADMIN_PASSWORD)

    assert f"Logged in to {server.url} as admin" in said
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    assert ADMIN_PASSWORD not in cli.config_file.read_text()
    stored = cli.stored()["servers"][server.url]
    assert stored["username"] == "admin"
    assert me_with(server, "admin", stored["token"]) == 200  # a personal access token the server knows
    me = cli.json("whoami")
    assert (me["name"], me["kind"], me["admin"]) == ("admin", "user", True)
    assert stored["token_id"] in [token["id"] for token in cli.json("token", "list")]

    # Logging in again replaces the token: the old one is revoked, not left behind.
    cli.login(server.url, "admin", ADMIN_PASSWORD)
    assert me_with(server, "admin", stored["token"]) == 401
    assert me_with(server, "admin", cli.stored()["servers"][server.url]["token"]) == 200


def test_bad_credentials_fail_with_one_clear_line_and_store_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    cli = make_cli(tmp_path, "home")

    line = cli.fails("login", server.url, "-u", "admin", "--password-stdin", stdin="not-the-password\n")

    assert "login to" in line and "wrong username or password" in line
    assert "not-the-password" not in line
    assert not cli.config_file.exists()
    assert "not logged in" in cli.fails("project", "list")


def test_unreachable_server_is_one_line(server: RunningServer, tmp_path: Path) -> None:
    cli = make_cli(tmp_path, "home")
    closed = f"http://127.0.0.1:{free_port()}"  # a port just found free: nothing listens there

    line = cli.fails("login", closed, "-u", "admin", "--password-stdin", stdin="x\n")

    assert line.startswith(f"dockyard: cannot connect to {closed}")


def test_logout_revokes_the_token_on_the_server(server: RunningServer, admin: Cli) -> None:
    token = admin.stored()["servers"][server.url]["token"]

    assert f"Logged out of {server.url}" in admin.ok("logout")

    assert me_with(server, "admin", token) == 401
    assert admin.stored() == {"current": None, "servers": {}}
    assert "not logged in" in admin.fails("whoami")


def test_a_token_the_server_refuses_says_to_log_in_again(
    server: RunningServer, admin: Cli, tmp_path: Path
) -> None:
    carol = new_user(admin, tmp_path, server, "carol")
    admin.ok("user", "disable", "carol")

    line = carol.fails("whoami")

    assert "refused the stored token of carol" in line and f"dockyard login {server.url}" in line
    admin.ok("user", "enable", "carol")
    assert carol.json("whoami")["name"] == "carol"


# --- the team workflow -----------------------------------------------------------------------------
def test_project_member_robot_push_and_repo_list(server: RunningServer, admin: Cli, tmp_path: Path) -> None:
    tools = ContainerTools(tmp_path / "containers")
    new_user(admin, tmp_path, server, "alice")
    assert "Created private project team." in admin.ok("project", "create", "team")
    admin.ok("member", "add", "team", "alice", "--role", "developer")
    members = {m["name"]: m["role"] for m in admin.json("member", "list", "team")}
    assert members == {"admin": "project_admin", "alice": "developer"}

    robot = admin.json(
        "robot", "create", "ci", "--project", "team", "--permission", "team:pull,push", "--expires", "30"
    )
    assert robot["name"] == "robot$team+ci" and robot["permissions"] == [
        {"project": "team", "actions": ["pull", "push"]}
    ]
    layout = write_oci_layout(tmp_path / "layout")
    try:
        tools.skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"robot$team+ci:{robot['secret']}",
            layout.transport_ref,
            f"docker://{server.host}/team/app:1.0",
        )

        listed = admin.json("repo", "list", "team")
        assert [(r["name"], r["tag_count"]) for r in listed] == [("team/app", 1)]
        assert "team/app" in admin.ok("repo", "list")
        assert [t["name"] for t in admin.json("repo", "tags", "team/app")] == ["1.0"]

        # A disabled robot's secret stops working.
        admin.ok("robot", "disable", "robot$team+ci")
        refused = tools.skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"robot$team+ci:{robot['secret']}",
            layout.transport_ref,
            f"docker://{server.host}/team/app:2.0",
            check=False,
        )
        assert refused.returncode != 0
    finally:
        tools.cleanup()
    assert [(r["name"], r["disabled"]) for r in admin.json("robot", "list", "--project", "team")] == [
        ("robot$team+ci", True)
    ]
    assert _audited(admin, actor="robot$team+ci", action="push")


def _audited(cli: Cli, **filters: str) -> list[Any]:
    args = [f"--{key}={value}" for key, value in filters.items()]
    deadline = time.monotonic() + 10
    while True:  # the server writes audit events in batches, about once a second
        events: list[Any] = cli.json("audit", *args)
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_tables_show_what_json_shows(server: RunningServer, admin: Cli) -> None:
    admin.ok("project", "create", "tables", "--public")

    table = admin.ok("project", "list").splitlines()

    header = table[0].split()
    assert header[:3] == ["Name", "Visibility", "Your"]
    row = next(line for line in table if line.startswith("tables "))
    assert row.split()[:3] == ["tables", "public", "admin"]
    shown = admin.json("project", "show", "tables")
    assert shown["public"] is True and "project.delete" in shown["permissions"]


def test_robot_secret_refresh_replaces_the_old_one(server: RunningServer, admin: Cli) -> None:
    admin.ok("project", "create", "refresh")
    first = admin.json("robot", "create", "robot$refresh+bot", "--permission", "pull")["secret"]

    second = admin.json("robot", "refresh", "bot", "--project", "refresh")["secret"]

    assert me_with(server, "robot$refresh+bot", first) == 401
    assert me_with(server, "robot$refresh+bot", second) == 200
    admin.ok("robot", "delete", "robot$refresh+bot", "--yes")
    assert admin.json("robot", "list", "--project", "refresh") == []


def test_system_robot_with_permissions_in_two_projects(server: RunningServer, admin: Cli) -> None:
    admin.ok("project", "create", "one")
    admin.ok("project", "create", "two")

    robot = admin.json("robot", "create", "sync", "--permission", "one:pull", "--permission", "two:pull,push")

    assert robot["name"] == "robot$sync" and robot["level"] == "system"
    assert {p["project"]: p["actions"] for p in robot["permissions"]} == {
        "one": ["pull"],
        "two": ["pull", "push"],
    }
    assert "robot$sync" in admin.ok("robot", "list")
    line = admin.fails("robot", "create", "bad", "--permission", "one:pull,fly")
    assert "actions from pull, push, delete" in line


# --- what other users may do, and the API's refusals -------------------------------------------------
def test_api_errors_are_one_line_with_status_and_code(
    server: RunningServer, admin: Cli, tmp_path: Path
) -> None:
    bob = new_user(admin, tmp_path, server, "bob")

    assert bob.fails("user", "list") == (
        "dockyard: only system administrators may do this (HTTP 403 FORBIDDEN)"
    )
    assert "(HTTP 403 FORBIDDEN)" in bob.fails("project", "create", "bobs")
    admin.ok("project", "create", "dup")
    assert "(HTTP 409 CONFLICT)" in admin.fails("project", "create", "dup")
    assert "(HTTP 404 NOT_FOUND)" in admin.fails("project", "show", "no-such-project")
    assert "not a member" in admin.fails("member", "remove", "dup", "bob")


def test_member_roles_change_and_go(server: RunningServer, admin: Cli, tmp_path: Path) -> None:
    new_user(admin, tmp_path, server, "dave")
    admin.ok("project", "create", "roles")
    admin.ok("member", "add", "roles", "dave", "--role", "guest")

    admin.ok("member", "set-role", "roles", "dave", "--role", "maintainer")
    assert {m["name"]: m["role"] for m in admin.json("member", "list", "roles")}["dave"] == "maintainer"

    admin.ok("member", "remove", "roles", "dave")
    assert [m["name"] for m in admin.json("member", "list", "roles")] == ["admin"]
    admin.ok("project", "update", "roles", "--public")
    assert admin.json("project", "show", "roles")["public"] is True
    assert admin.json("project", "scan-settings", "roles")["scan_on_push"] is False
    admin.ok("project", "scan-settings", "roles", "--scan-on-push")
    assert admin.json("project", "scan-settings", "roles") == {"project": "roles", "scan_on_push": True}
    admin.ok("project", "delete", "roles", "--yes")
    assert "(HTTP 404 NOT_FOUND)" in admin.fails("project", "show", "roles")


def test_a_single_sign_on_user_is_created_without_a_password(server: RunningServer, admin: Cli) -> None:
    user = admin.json("user", "create", "sso-erin", "--oidc", "--email", "erin@example.com")
    assert (user["username"], user["source"], user["email"]) == ("sso-erin", "oidc", "erin@example.com")
    assert "oidc" in admin.ok("user", "show", "sso-erin")
    # No password to log in with, whatever is tried.
    assert me_with(server, "sso-erin", "") == 401
    assert me_with(server, "sso-erin", "sso-erin-password-9") == 401


def test_passwd_changes_the_password_and_users_can_be_deleted(
    server: RunningServer, admin: Cli, tmp_path: Path
) -> None:
    erin = new_user(admin, tmp_path, server, "erin")

    erin.ok("user", "passwd", "--password-stdin", stdin="erin-password-9\nerin-new-password\n")

    assert me_with(server, "erin", "erin-new-password") == 200
    assert me_with(server, "erin", "erin-password-9") == 401
    admin.ok("user", "passwd", "erin", "--password-stdin", stdin="set-by-admin-1\n")
    assert me_with(server, "erin", "set-by-admin-1") == 200
    admin.ok("user", "delete", "erin", "--yes")
    assert "erin" not in [u["username"] for u in admin.json("user", "list")]


def test_personal_tokens_create_list_revoke(server: RunningServer, admin: Cli) -> None:
    token = admin.json(
        "token", "create", "laptop", "--expires", "7", "--password-stdin", stdin=ADMIN_PASSWORD
    )
    assert "wrong password" in admin.fails("token", "create", "x", "--password-stdin", stdin="not-it-1\n")

    assert me_with(server, "admin", token["secret"]) == 200
    assert "laptop" in [t["name"] for t in admin.json("token", "list")]
    admin.ok("token", "revoke", "laptop")
    assert me_with(server, "admin", token["secret"]) == 401
    assert "use `dockyard logout`" in admin.fails(
        "token", "revoke", str(admin.stored()["servers"][server.url]["token_id"])
    )


# --- TLS ---------------------------------------------------------------------------------------------
def test_https_server_needs_its_ca_or_insecure(tmp_path: Path) -> None:
    certs = dockyard_cert("127.0.0.1", tmp_path / "certs")
    running = start_server(
        tmp_path / "tls-server",
        AUTH_ON,
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        tls=(certs / "server.crt", certs / "server.key"),
    )
    try:
        cli = make_cli(tmp_path, "home")
        password = ADMIN_PASSWORD + "\n"
        args = ("login", running.url, "-u", "admin", "--password-stdin")

        untrusted = cli.fails(*args, stdin=password)
        assert "not trusted" in untrusted and "--ca-cert" in untrusted

        cli.ok(*args, "--ca-cert", str(certs / "ca.crt"), stdin=password)
        assert cli.json("whoami")["name"] == "admin"  # the CA is remembered with the login

        other = make_cli(tmp_path, "other")
        other.ok(*args, "--insecure", stdin=password)
        assert other.json("whoami")["name"] == "admin"
    finally:
        running.stop()


def test_audit_shows_pulls_as_hourly_counts(server: RunningServer, admin: Cli) -> None:
    token = httpx.get(
        f"{server.url}/token",
        params={"service": "dockyard", "scope": "repository:counted/app:pull,push"},
        auth=("admin", ADMIN_PASSWORD),
        timeout=HTTP_TIMEOUT,
    ).json()["token"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
    ) as http:
        pushed = OCIClient(http).push_image("counted/app", "1.0")
        for _ in range(3):
            assert http.get("/v2/counted/app/manifests/1.0").status_code == 200

    deadline = time.monotonic() + 20
    while True:  # the counts reach the database in a batch every 5 s
        pulls = admin.json("audit", "--action=pull", "--resource=counted/")
        if sum(e["count"] for e in pulls) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(e["resource_name"], e["actor"], e["hourly"]) for e in pulls] == [
        (f"counted/app@{pushed.digest}", "admin", True)
    ] * len(pulls)
    assert sum(e["count"] for e in pulls) == 3

    table = admin.ok("audit", "--action=pull", "--resource=counted/").splitlines()
    assert table[0].split() == ["Time", "Actor", "From", "Action", "Resource", "Result", "Count"]
    # Under the header and its rule: 2026-03-01 13:00 +1h admin 127.0.0.1 pull artifact counted/... ok 3
    row = table[2].split()
    assert row[1].endswith(":00") and row[2] == "+1h"
    assert row[3:] == ["admin", "127.0.0.1", "pull", "artifact", f"counted/app@{pushed.digest}", "ok", "3"]


def test_tags_are_added_moved_and_deleted(server: RunningServer, admin: Cli) -> None:
    admin.ok("project", "create", "tagging")
    with httpx.Client(base_url=server.url, auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        first = oci.push_image("tagging/app", "1.0", seed="one").digest
        second = oci.push_image("tagging/app", "2.0", seed="two").digest

        def named(tag: str) -> str:
            return str(oci.get_manifest("tagging/app", tag).headers["Docker-Content-Digest"])

        added = admin.ok("tag", "add", "tagging/app:1.0", "stable", "prod")
        assert added.strip() == f"Tagged tagging/app@{first} as stable, prod."
        assert named("stable") == named("prod") == first
        refused = admin.fails("tag", "add", f"tagging/app@{second}", "stable")
        assert "tag stable names" in refused and "(HTTP 409 CONFLICT)" in refused
        moved = admin.json("tag", "move", "tagging/app:2.0", "stable")
        assert [(t["name"], t["digest"], t["previous"]) for t in moved] == [("stable", second, first)]
        assert named("stable") == second
        admin.ok("tag", "delete", "tagging/app:prod")
        assert http.head("/v2/tagging/app/manifests/prod").status_code == 404
        assert named("1.0") == first  # the artifact stays
