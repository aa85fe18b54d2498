"""The scale bench reports every run's errors: their count, kinds and samples, and where the logs are."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.randomload import run
from bench.scale import Row, Run, ScaleResult, error_lines
from bench.scenarios import Measurement

UNAVAILABLE = b'{"errors":[{"code":"UNAVAILABLE","message":"the database is unavailable"}]}'


class Closer:
    """Closes one connection, once the load has measured for a while (its warm-up is 0.2 s)."""

    def __init__(self) -> None:
        self.at = asyncio.get_running_loop().time() + 0.35

    def now(self) -> bool:
        if asyncio.get_running_loop().time() < self.at:
            return False
        self.at = float("inf")
        return True


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closer: Closer) -> None:
    """200 for even repositories, 503 with a body for odd ones; one connection closed mid-run."""
    while head := await reader.readuntil(b"\r\n\r\n"):
        path = head.split(b" ", 2)[1]
        if closer.now():
            writer.close()
            return
        if int(path.rsplit(b"-", 1)[1]) % 2 == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            length = str(len(UNAVAILABLE)).encode()
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: " + length + b"\r\n\r\n")
            writer.write(UNAVAILABLE)
        await writer.drain()


async def _load() -> dict[str, object]:
    closer = Closer()
    server = await asyncio.start_server(lambda r, w: _serve(r, w, closer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await run("127.0.0.1", port, "GET", "/v2/scale/r-{n}", 8, 0.3, 4, [])


def test_the_load_counts_errors_by_kind_with_samples_of_each() -> None:
    result = asyncio.run(_load())
    kinds = result["error_kinds"]
    assert isinstance(kinds, dict) and set(kinds) == {"HTTP 503", "connection lost: closed by the server"}
    assert result["errors"] == sum(kinds.values())
    samples = result["error_samples"]
    assert isinstance(samples, list)
    unavailable = next(sample for sample in samples if "503" in sample)
    assert "GET /v2/scale/r-" in unavailable and "UNAVAILABLE" in unavailable
    assert any("connection lost" in sample for sample in samples)
    assert len(samples) <= 3 * len(kinds)


def test_the_report_lists_every_run_with_its_errors_and_the_kept_logs() -> None:
    failing = Measurement(100.0, 4, 9.0, notes=["3 x HTTP 503, 1 x connection lost", "at 1.20 s: GET /x"])
    result = ScaleResult(
        rows=[Row("scale-manifest-get", "manifest GET", "req/s", 1.5)],
        startup={},
        seeding={},
        audit={},
        pulls=0,
        runs=[
            Run("manifest GET", 1, "distribution v3.1.1", Measurement(90.0)),
            Run("manifest GET", 1, "dockyard", failing),
        ],
        logs={"dockyard": Path("/tmp/run-logs/dockyard.log")},
    )
    text = "\n".join(error_lines(result))
    assert "- manifest GET, round 1, distribution v3.1.1: 0 errors" in text
    assert "- manifest GET, round 1, dockyard: 4 errors: 3 x HTTP 503, 1 x connection lost" in text
    assert "  - at 1.20 s: GET /x" in text
    assert "- dockyard: `/tmp/run-logs/dockyard.log`" in text
