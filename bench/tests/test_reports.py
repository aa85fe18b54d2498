"""The figures and error counts the bench reads from wrk and ab, and the bytes it sends."""

from __future__ import annotations

import hashlib

import pytest

from bench import smallrequests
from bench.operations import UniqueBlobs
from bench.procs import idle_share, machine_cpu_ticks
from bench.smallrequests import SmallRequest, parse_ab_report, parse_wrk_report

WRK_WITH_ERRORS = """\
Running 5s test @ http://127.0.0.1:5000/v2/bench/app/manifests/latest
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  40.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  Latency Distribution
     50%    2.90ms
     75%    3.50ms
     90%    4.00ms
     99%  850.00us
  100000 requests in 5.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  20000.50
Transfer/sec:      6.00MB
"""

AB_NOT_KEPT_ALIVE = """\
Concurrency Level:      64
Time taken for tests:   5.001 seconds
Complete requests:      5000
Failed requests:        0
Non-2xx responses:      12
Keep-Alive requests:    4000
Requests per second:    999.80 [#/sec] (mean)
Percentage of the requests served within a certain time (ms)
  50%     60
  99%    120
 100%    300 (longest request)
"""


def test_wrk_report_counts_socket_errors_and_bad_statuses() -> None:
    result = parse_wrk_report(WRK_WITH_ERRORS)
    assert result.requests_per_second == 20000.50
    assert result.p99_ms == pytest.approx(0.85)
    assert result.requests == 100000
    assert result.errors == 3 + 7
    assert "Non-2xx" in result.error_detail


def test_ab_report_counts_non_2xx_and_flags_closed_connections() -> None:
    result = parse_ab_report(AB_NOT_KEPT_ALIVE)
    assert (result.requests_per_second, result.p99_ms, result.errors) == (999.80, 120.0, 12)
    assert "not kept alive" in result.error_detail


def test_a_report_without_figures_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_wrk_report("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_head_request_script_sets_method_and_headers() -> None:
    script = SmallRequest("HEAD", "/v2/", {"Accept": "application/json"}).lua()
    assert 'wrk.method = "HEAD"' in script
    assert 'wrk.headers["Accept"] = "application/json"' in script


def test_unique_blobs_differ_and_their_digests_match_their_bytes() -> None:
    blobs = UniqueBlobs(4096)
    first, second = blobs.new(), blobs.new()
    assert first.digest != second.digest
    for blob in (first, second):
        content = b"".join(blob.parts)
        assert len(content) == 4096
        assert blob.digest == f"sha256:{hashlib.sha256(content).hexdigest()}"
        assert b"".join(blob.slice(1000, 4090)) == content[1000:4090]


def test_idle_share_is_the_idle_part_of_the_ticks_between_two_readings() -> None:
    idle, total = machine_cpu_ticks()
    assert 0 <= idle <= total
    assert idle_share((10, 100), (30, 200)) == 0.2
    assert idle_share((10, 100), (10, 100)) is None


@pytest.mark.parametrize(
    ("method", "tool", "expected"), [("GET", "auto", "wrk"), ("HEAD", "auto", "ab"), ("GET", "ab", "ab")]
)
def test_small_requests_run_on_wrk_unless_head_or_ab_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, method: str, tool: str, expected: str
) -> None:
    used: list[str] = []
    monkeypatch.setattr(smallrequests, "probe", lambda *args: None)
    monkeypatch.setattr(smallrequests, "run_wrk", lambda *args: used.append("wrk"))
    monkeypatch.setattr(smallrequests, "run_ab", lambda *args: used.append("ab"))
    smallrequests.run_small("127.0.0.1", 1, SmallRequest(method, "/v2/"), 1.0, 8, tool)
    assert used == [expected]
