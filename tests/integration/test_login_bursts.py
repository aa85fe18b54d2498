"""A client's first burst against a real `dockyard serve` with auth on: many connections at once,
all with the same credentials the server has not seen yet (docker and containerd pull layers over
several connections; a CI fleet starts together). Each answer must be what a single request gets:
200 for the right password on every one of them, 401 for a wrong one on every one of them; the
server shares one password check among identical attempts in flight (tests/unit/auth/
test_login_bursts.py counts the hashes; memory figures are in docs/benchmarks.md, not asserted).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "bursts-admin-password-1")
BURST = 32
CONFIG: dict[str, Any] = {"auth": {"enabled": True}, "http": {"workers": 2}}
_addresses = (f"127.0.0.{n}" for n in itertools.count(20))  # a client address per burst
_user_numbers = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("bursts-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


def new_user(server: RunningServer) -> tuple[str, str]:
    user = (f"bursty-{next(_user_numbers)}", "the-right-password-1")
    answer = httpx.post(
        f"{server.url}/api/v1/users",
        json={"username": user[0], "password": user[1]},
        auth=ADMIN,
        timeout=HTTP_TIMEOUT,  # hashing two passwords (argon2) took over httpx's 5 s once on a loaded machine
    )
    assert answer.status_code == 201, answer.text
    return user


def burst(server: RunningServer, path: str, auth: tuple[str, str]) -> list[httpx.Response]:
    """BURST requests from as many connections, each opened first, then all sent at once."""
    address = next(_addresses)
    ready = threading.Barrier(BURST)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=server.url, transport=transport, timeout=HTTP_TIMEOUT) as http:
            assert http.get("/v2/").status_code == 401  # connected; no credentials sent yet
            ready.wait()
            answer = http.get(path, auth=auth)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == BURST  # every thread answered (an exception in one would leave it short)
    return answers


TOKEN = "/token?service=dockyard&scope=repository:library/app:pull"
paths = pytest.mark.parametrize("path", ["/v2/", TOKEN], ids=["v2-basic", "token"])


@paths
def test_a_burst_with_new_right_credentials_all_succeed(server: RunningServer, path: str) -> None:
    answers = burst(server, path, new_user(server))
    assert [answer.status_code for answer in answers] == [200] * BURST, answers[0].text
    if path == TOKEN:
        assert all(answer.json()["token"] for answer in answers)


@paths
def test_a_burst_with_a_wrong_password_all_get_401(server: RunningServer, path: str) -> None:
    username, _ = new_user(server)
    answers = burst(server, path, (username, "not-the-password-1"))
    assert [answer.status_code for answer in answers] == [401] * BURST
    assert all("www-authenticate" in answer.headers for answer in answers)
