"""Stopping the real processes tests start (dockyard, PostgreSQL, SeaweedFS, slapd, HAProxy, containerd)."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 15) -> None:
    """Ask it to stop with `sig`; kill it if it has not exited within `grace` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def line_after(argv: list[str], first: str, first_within: float, then_within: float) -> str:
    """Run the script `argv`; once it has said `first` (its first line, within `first_within` seconds:
    else the assertion fails with its stderr), its next line within `then_within` seconds, or "" if it
    said none by then (it is killed: a kill ends its output)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        lines = iter(process.stdout.readline, "")
        said = _next_line_within(lines, process, first_within)
        if said != first:
            process.kill()
            assert said == first, f"the script said {said!r}, not {first!r}: {process.stderr.read()}"
        return _next_line_within(lines, process, then_within)
    finally:
        process.kill()
        process.wait()


def _next_line_within(lines: Iterator[str], process: subprocess.Popen[str], seconds: float) -> str:
    waiting = threading.Timer(seconds, process.kill)
    waiting.start()
    try:
        return next(lines, "").strip()
    finally:
        waiting.cancel()
