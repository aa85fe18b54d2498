"""The auth mode's pieces that need no server (the htpasswd file, Basic headers) and table rows."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt

from bench.authmode import basic_authorization, token_path, write_htpasswd
from bench.report import ScenarioOutcome, rows
from bench.scenarios import Measurement, Scenario
from bench.servers import DISTRIBUTION_2, DISTRIBUTION_3

REFERENCES = [DISTRIBUTION_2, DISTRIBUTION_3]


def _never(*args: object) -> Measurement:
    raise AssertionError("not measured in this test")


def test_htpasswd_entry_is_bcrypt_and_checks_the_password(tmp_path: Path) -> None:
    line = write_htpasswd(tmp_path / "htpasswd", "bench-puller", "s3cret-pass").read_text().strip()
    username, digest = line.split(":", 1)
    assert username == "bench-puller"
    assert digest.startswith("$2y$05$")  # what `htpasswd -B` writes
    assert bcrypt.checkpw(b"s3cret-pass", digest.encode())
    assert not bcrypt.checkpw(b"wrong", digest.encode())


def test_basic_header_and_token_path() -> None:
    header = basic_authorization("user", "pa:ss")
    assert base64.b64decode(header.removeprefix("Basic ")) == b"user:pa:ss"
    assert token_path("bench/app") == "/token?service=dockyard&scope=repository:bench/app:pull"


def test_candidate_only_row_has_no_ratio_and_meets_an_absolute_target() -> None:
    scenario = Scenario("auth-token-user", "token issuing", "tokens/s", 1000.0, _never, candidate_only=True)
    slow = Scenario("auth-token-anonymous", "anonymous", "tokens/s", 1000.0, _never, candidate_only=True)
    outcomes = [
        ScenarioOutcome(scenario, {}, [Measurement(1200.0, p99_ms=5.0), Measurement(1100.0, p99_ms=7.0)]),
        ScenarioOutcome(slow, {}, [Measurement(900.0, p99_ms=5.0)]),
    ]
    met, missed = rows(outcomes, {}, REFERENCES, "dockyard")
    assert met[2:13] == ["", "", "1,150", "", "", "≥1,000 tokens/s", "yes", "— / — / 6.0", "", "", "0"]
    assert missed[8] == "no"


def test_ratio_row_compares_with_both_references_and_targets_the_one_named() -> None:
    scenario = Scenario("auth-manifest-get", "manifest", "req/s", 8.0, _never, target_reference="2.8.2")
    references = {REFERENCES[0]: [Measurement(200.0)], REFERENCES[1]: [Measurement(500.0)]}
    outcome = ScenarioOutcome(scenario, references, [Measurement(1000.0)])
    (row,) = rows([outcome], {}, REFERENCES, "dockyard")
    assert row[2:9] == ["200", "500", "1,000", "5.00x", "2.00x", "≥8x 2.8.2", "no"]
    peer = Scenario("manifest-get", "manifest", "req/s", 1.5, _never)
    (row,) = rows([ScenarioOutcome(peer, references, [Measurement(1000.0)])], {}, REFERENCES, "dockyard")
    assert row[7:9] == ["≥1.5x v3.1.1", "yes"]


def test_transfer_row_shows_each_servers_cpu_per_mib() -> None:
    scenario = Scenario("push-post-put-64m-c1", "push", "MiB/s", 1.2, _never)
    cheap, dear = Measurement(300.0), Measurement(200.0)
    cheap.server_cpu_ms_per_mib, dear.server_cpu_ms_per_mib = 1.25, 4.5
    references = {REFERENCES[0]: [Measurement(100.0)], REFERENCES[1]: [dear]}
    (row,) = rows([ScenarioOutcome(scenario, references, [cheap])], {}, REFERENCES, "dockyard")
    assert row[10:13] == ["— / 4.50 / 1.25", "", "0"]


def test_small_row_shows_cpu_per_request_and_idle_cpus() -> None:
    scenario = Scenario("blob-head", "blob HEAD", "req/s", 3.0, _never)
    measured = [Measurement(20_000.0), Measurement(9_000.0), Measurement(30_000.0)]
    for each, cpu_ms, idle in zip(measured, (0.1, 0.08, 0.035), (0.02, 0.05, 0.18), strict=True):
        each.server_cpu_ms, each.idle_share = cpu_ms, idle
    references = {REFERENCES[0]: [measured[0]], REFERENCES[1]: [measured[1]]}
    (row,) = rows([ScenarioOutcome(scenario, references, [measured[2]])], {}, REFERENCES, "dockyard")
    assert row[10:13] == ["100.0 / 80.0 / 35.0", "2 / 5 / 18", "0"]
