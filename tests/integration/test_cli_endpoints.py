"""`dockyard endpoint ...` against a real `dockyard serve`, with a real registry (Debian's
docker-registry behind htpasswd) as the endpoint, both on loopback (allowed by upstream.allowed_networks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli import Cli
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server

ADMIN_PASSWORD = "cli-endpoints-admin-password-1"
USER = ("puller", "registry2-cli-password")
CONFIG = {"auth": {"enabled": True}, "upstream": {"allowed_networks": ["127.0.0.0/8"]}}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("cli-upstream"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("cli-endpoints"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    yield running
    running.stop()


@pytest.fixture
def admin(server: RunningServer, tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "home")
    cli.home.mkdir()
    cli.login(server.url, "admin", ADMIN_PASSWORD)
    return cli


def test_create_list_show_test_update_delete(admin: Cli, upstream: str) -> None:
    created = admin.json("endpoint", "create", "mirror", "--url", upstream, "-u", USER[0], "--secret-stdin",
                         stdin=USER[1] + "\n")  # fmt: skip
    assert (created["auth"], created["has_secret"], created["url"]) == ("basic", True, upstream)
    assert USER[1] not in admin.ok("endpoint", "show", "mirror")
    assert "mirror" in admin.ok("endpoint", "list")
    assert "answers" in admin.ok("endpoint", "test", "mirror")

    admin.ok("endpoint", "update", "mirror", "-u", USER[0], "--secret-stdin", stdin="wrong-password\n")
    assert "failed its check" in admin.fails("endpoint", "test", "mirror")

    assert admin.json("endpoint", "update", "mirror", "--no-credentials")["auth"] == "none"
    admin.ok("endpoint", "delete", "mirror", "--yes")
    assert admin.json("endpoint", "list") == []
    assert "no registry endpoint named" in admin.fails("endpoint", "show", "mirror")


def test_bad_input_is_one_error_line(admin: Cli) -> None:
    assert "https://" in admin.fails("endpoint", "create", "x", "--url", "ftp://example.com")
    assert "not both" in admin.fails(
        "endpoint", "create", "x", "--url", "https://example.com", "-u", "a", "--token"
    )
    assert "nothing to change" in admin.fails("endpoint", "update", "x")


def test_a_proxy_project_from_the_cli(admin: Cli, upstream: str) -> None:
    admin.json("endpoint", "create", "pulled", "--url", upstream, "-u", USER[0], "--secret-stdin",
               stdin=USER[1] + "\n")  # fmt: skip
    created = admin.json("project", "create", "mirror", "--public", "--proxy", "pulled", "--tag-ttl", "60")
    assert created["proxy"] == {"endpoint": "pulled", "tag_ttl_seconds": 60}
    assert "pulled (tag TTL 60 s)" in admin.ok("project", "show", "mirror")
    assert admin.json("project", "update", "mirror", "--tag-ttl", "30")["proxy"] == {
        "endpoint": "pulled",
        "tag_ttl_seconds": 30,
    }
    assert "used by a proxy project" in admin.fails("endpoint", "delete", "pulled", "--yes")
    assert admin.json("project", "update", "mirror", "--no-proxy")["proxy"] is None
    assert "is no proxy" in admin.fails("project", "update", "mirror", "--tag-ttl", "5")
    assert "--tag-ttl goes with --proxy" in admin.fails("project", "create", "other", "--tag-ttl", "5")
    assert "no registry endpoint named 'absent'" in admin.fails("project", "create", "x", "--proxy", "absent")
    admin.ok("endpoint", "delete", "pulled", "--yes")
