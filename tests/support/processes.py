"""Stopping the real processes tests start (dockyard, PostgreSQL, SeaweedFS, slapd, HAProxy, containerd)."""

from __future__ import annotations

import signal
import subprocess


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
