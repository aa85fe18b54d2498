"""Request-rate limits on /v2 (`limits.user`, `limits.address`) through the whole app in process:
over a limit the answer is 429 TOOMANYREQUESTS in the spec's error format with Retry-After, and the
same request works again after that wait; users have budgets of their own; a client without
credentials is counted by its real address, whatever X-Forwarded-For it writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.api.allowlist import parse_networks
from dockyard.api.oci.limits import address_bucket
from tests.support.inprocess import ADMIN, BASE_URL, basic, in_process_client

LIMITS: dict[str, Any] = {
    "limits": {"user": {"rate": 0.01, "burst": 3}, "address": {"rate": 0.01, "burst": 2}},
}


def make_user(http: Any, name: str) -> dict[str, str]:
    password = f"{name}-password-Zx81"
    answer = http.post("/api/v1/users", json={"username": name, "password": password}, headers=basic(*ADMIN))
    assert answer.status_code == 201, answer.text
    return basic(name, password)


def assert_too_many(answer: Any) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert int(answer.headers["Retry-After"]) >= 1


def test_a_burst_over_the_user_limit_gets_429_and_other_users_are_not_starved(tmp_path: Path) -> None:
    with in_process_client(tmp_path, LIMITS) as http:
        alice, bob = make_user(http, "alice"), make_user(http, "bob")
        assert [http.get("/v2/", headers=alice).status_code for _ in range(3)] == [200, 200, 200]
        over = http.get("/v2/", headers=alice)
        assert_too_many(over)
        assert 90 <= int(over.headers["Retry-After"]) <= 100  # one request every 100 s
        assert "at most 0.01 a second" in over.json()["errors"][0]["message"]
        # bob's budget is his own, and alice's does not come back by changing address.
        assert [http.get("/v2/", headers=bob).status_code for _ in range(3)] == [200, 200, 200]
        with in_process_client_at(http, "198.51.100.7") as elsewhere:
            assert_too_many(elsewhere.get("/v2/", headers=alice))
        metrics = http.get("/metrics", headers=basic(*ADMIN)).text
        assert 'registry_requests_limited_total{limit="user"} 2.0' in metrics  # no user or address label


def test_requests_without_credentials_are_limited_per_real_address(tmp_path: Path) -> None:
    config = {
        **LIMITS,
        "http": {"trusted_proxies": ["10.0.0.0/8"]},
    }  # the test client's 192.0.2.10 is not one
    with in_process_client(tmp_path, config) as http:
        answers = [
            http.get("/v2/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(4)
        ]
        assert answers == [401, 401, 429, 429]  # the forged addresses changed nothing
        with in_process_client_at(http, "192.0.2.11") as neighbour:
            assert neighbour.get("/v2/").status_code == 401  # another address: a budget of its own


def test_the_limit_recovers_after_retry_after(tmp_path: Path) -> None:
    with in_process_client(tmp_path, {"limits": {"user": {"rate": 2, "burst": 1}}}) as http:
        alice = make_user(http, "alice")
        assert http.get("/v2/", headers=alice).status_code == 200
        over = http.get("/v2/", headers=alice)
        assert_too_many(over)
        assert over.headers["Retry-After"] == "1"  # half a second, rounded up: whole seconds
        time.sleep(int(over.headers["Retry-After"]))
        assert http.get("/v2/", headers=alice).status_code == 200


def test_exempt_networks_and_limits_off(tmp_path: Path) -> None:
    exempt = {"limits": {**LIMITS["limits"], "exempt": ["192.0.2.0/24"]}}
    with in_process_client(tmp_path / "exempt", exempt) as http:
        assert {http.get("/v2/").status_code for _ in range(10)} == {401}
    with in_process_client(tmp_path / "off", {}) as http:  # the default: no limits
        assert {http.get("/v2/").status_code for _ in range(10)} == {401}


def test_an_open_registry_limits_every_request_by_address(tmp_path: Path) -> None:
    config = {"auth": {"enabled": False}, "limits": {"address": {"rate": 0.01, "burst": 2}}}
    with in_process_client(tmp_path, config) as http:
        assert [http.get("/v2/").status_code for _ in range(3)] == [200, 200, 429]
        assert_too_many(http.get("/v2/_catalog"))


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("192.0.2.1", "addr:192.0.2.1"),
        ("::ffff:192.0.2.1", "addr:192.0.2.1"),  # an IPv4 client on a dual-stack socket
        ("2001:db8:1:2:aaaa::1", "addr:2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "addr:2001:db8:1:2::/64"),  # the same /64: the same host, rotating
        ("10.1.2.3", None),  # exempt
        (None, "addr:unknown"),
        ("not-an-ip", "addr:unknown"),
    ],
)
def test_address_buckets(host: str | None, bucket: str | None) -> None:
    assert address_bucket(host, parse_networks(["10.0.0.0/8"])) == bucket


class in_process_client_at:
    """Another TestClient on the same app, from another client address."""

    def __init__(self, http: Any, address: str) -> None:
        from starlette.testclient import TestClient

        self.client = TestClient(http.app, base_url=BASE_URL, client=(address, 40001))

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
