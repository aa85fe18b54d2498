"""Small-request scenarios with C load tools: requests/s and p99 latency, parsed from their reports.

wrk (event loop, HTTP/1.1) runs the GETs. wrk 4.1 cannot do HEAD: its response parser is never told the
request was HEAD, so it waits for a body the server must not send and completes nothing. HEADs run on
ApacheBench (`ab -i -k`), which measured the same rate as wrk on GETs here; ab speaks HTTP/1.0 with
keep-alive, so the run checks every request was kept alive (a server that closes would be penalised).
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WRK = "/usr/bin/wrk"
AB = "/usr/bin/ab"
TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class SmallRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def lua(self) -> str:
        lines = [f'wrk.method = "{self.method}"']
        lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in self.headers.items()]
        return "\n".join(lines) + "\n"


@dataclass
class SmallResult:
    requests_per_second: float
    p99_ms: float
    requests: int
    errors: int  # socket errors, failed and non-2xx responses, as the tool counts them
    error_detail: str = ""


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * TIME_UNITS[match[2]]


def parse_wrk_report(report: str) -> SmallResult:
    """Figures from `wrk --latency` output; raises ValueError if a figure is missing."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", report, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", report, re.M)
    total = re.search(r"^\s+(\d+) requests in", report, re.M)
    if not (rate and p99 and total):
        raise ValueError(f"could not read wrk's report:\n{report}")
    errors, details = 0, []
    if socket := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report):
        errors += sum(int(count) for count in socket.groups())
        details.append(socket[0])
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", report):
        errors += int(bad[1])
        details.append(bad[0])
    return SmallResult(float(rate[1]), _milliseconds(p99[1]), int(total[1]), errors, "; ".join(details))


def probe(host: str, port: int, request: SmallRequest) -> None:
    """One request before the run: wrk counts only >= 400 as errors, so a 3xx or wrong answer stops here."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(request.method, request.path, headers=request.headers)
        response = conn.getresponse()
        body = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{request.method} {request.path} -> {response.status} {body[:200]!r}")
    finally:
        conn.close()


def run_small(
    host: str, port: int, request: SmallRequest, duration: float, connections: int = 64, tool: str = "auto"
) -> SmallResult:
    """`tool`: "auto" runs GETs on wrk and HEADs on ab (wrk cannot HEAD); "ab" runs everything on ab,
    to compare a GET row with the HEAD rows on the same client."""
    probe(host, port, request)
    if request.method == "HEAD" or tool == "ab":
        return run_ab(host, port, request, duration, connections)
    return run_wrk(host, port, request, duration, connections)


def _tool(path: str, package: str) -> str:
    if shutil.which(path) is None:
        raise RuntimeError(f"{path} is missing: apt-get install {package}")
    return path


def run_wrk(
    host: str, port: int, request: SmallRequest, duration: float, connections: int = 64, threads: int = 2
) -> SmallResult:
    _tool(WRK, "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(request.lua())
    try:
        argv = [
            WRK,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",  # wrk's default (2 s) counts slow answers as errors and drops their latency
            "30s",
            "-s",
            script.name,
            f"http://{host}:{port}{request.path}",
        ]
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        Path(script.name).unlink()
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr}")
    return parse_wrk_report(completed.stdout)


def parse_ab_report(report: str) -> SmallResult:
    """Figures from `ab -k` output (its percentiles are whole milliseconds)."""
    rate = re.search(r"^Requests per second:\s+([\d.]+)", report, re.M)
    p99 = re.search(r"^\s+99%\s+(\d+)", report, re.M)
    total = re.search(r"^Complete requests:\s+(\d+)", report, re.M)
    if not (rate and p99 and total):
        raise ValueError(f"could not read ab's report:\n{report}")
    errors, details = 0, []
    for label in ("Failed requests", "Non-2xx responses", "Write errors"):
        if (found := re.search(rf"^{label}:\s+(\d+)", report, re.M)) and int(found[1]):
            errors += int(found[1])
            details.append(found[0])
    kept_alive = re.search(r"^Keep-Alive requests:\s+(\d+)", report, re.M)
    if kept_alive is None or int(kept_alive[1]) < int(total[1]):
        details.append(f"not kept alive: {kept_alive[0] if kept_alive else 'none'} of {total[1]}")
    return SmallResult(float(rate[1]), float(p99[1]), int(total[1]), errors, "; ".join(details))


def run_ab(
    host: str, port: int, request: SmallRequest, duration: float, connections: int = 64
) -> SmallResult:
    argv = [
        _tool(AB, "apache2-utils"),
        "-q",
        "-k",
        "-c",
        str(connections),
        "-t",
        f"{duration:g}",
        "-n",
        "100000000",
    ]
    if request.method == "HEAD":
        argv.append("-i")
    for name, value in request.headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://{host}:{port}{request.path}")
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"ab failed ({completed.returncode}): {completed.stderr}")
    return parse_ab_report(completed.stdout)
