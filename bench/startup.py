"""`python -m bench.startup`: how long `dockyard serve` takes to start and to stop, the working tree and,
with `--dockyard-rev REV`, a commit beside it (alternating, one start of each per round).

The embedded default with auth on and its job runner (`http.workers: 2`), on a data directory that is
initialised already (a first start, not counted): seconds from exec until GET /v2/ answers, then from
SIGTERM to serve's main process only (as `docker stop` or systemd's `KillMode=mixed` send it), sent as
soon as /v2/ answered, until serve has exited; and the CPU time (user + system) of the whole start and
stop, every process of serve's included (each is waited for by its parent, so the kernel adds its time to
this process's children). Medians of `--rounds` (default 8); a benchmark, not a test: on a loaded
machine read the seconds with a wide margin, side by side; the CPU time moves far less with the load.

`--as-tests`: the configuration the test suite's servers start with (tests/support/server.py: one
worker, auth off, no job runner), ~300 starts per CI run.

Both sources are byte-compiled first (`compileall`), as the container image and `pip install` leave
dockyard: where PYTHONDONTWRITEBYTECODE is set (as in some CI and agent shells), every start would
otherwise compile each of dockyard's modules again, ~1.5 s of CPU that no deployment spends. So are
the packages serve imports (SQLAlchemy, pydantic, Starlette, ...): the servers run without that
variable, so the first start, not counted, writes their `.pyc` files as Python does by default. uv
installs the venv without them (scripts/install-test-deps.sh), and the tests keep theirs elsewhere
(the Makefile's PYTHONPYCACHEPREFIX): with the variable set, each start compiled them again (~1.1 s of
CPU more for SQLAlchemy's ORM, pydantic and Starlette alone, at load ~15).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import (
    _answers_v2,
    describe_source,
    dockyard_command,
    dockyard_environment,
    resolve_rev,
    snapshot_source,
    without_bytecode_opt_out,
    write_dockyard_config,
)

PASSWORD = "startup-bench correct horse 42"
POLL = 0.005  # seconds between GET /v2/ while it starts


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_and_stop(argv: list[str], env: dict[str, str], port: int, log: Path) -> tuple[float, float, float]:
    """(seconds until /v2/ answered, seconds from SIGTERM until serve exited, CPU seconds of it all)."""
    cpu = children_cpu()
    with log.open("ab") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        while not _answers_v2("127.0.0.1", port):
            if process.poll() is not None:
                raise RuntimeError(f"dockyard exited with {process.returncode}: see {log}")
            time.sleep(POLL)
        up = time.monotonic() - started
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        return up, time.monotonic() - stopping, children_cpu() - cpu
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dockyard-rev", help="also bench this commit's src/, alternating with the tree")
    parser.add_argument("--as-tests", action="store_true", help="as the tests start it: 1 worker, no auth")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        variants: dict[str, tuple[list[str], dict[str, str], int, Path]] = {}
        sources: dict[str, Path | None] = {describe_source(None): None}
        if options.dockyard_rev:
            rev = resolve_rev(options.dockyard_rev)
            sources[describe_source(rev)] = snapshot_source(rev, Path(scratch) / "rev")
        for index, (name, source) in enumerate(sources.items()):
            compiled = source or Path(__file__).resolve().parents[1] / "src"
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(compiled)], check=True)
            workdir = Path(scratch) / f"server-{index}"
            if options.as_tests:
                sections = {"jobs": {"run_in_serve": False}}
                config, port = write_dockyard_config(workdir, 1, auth={"enabled": False}, sections=sections)
            else:
                config, port = write_dockyard_config(workdir, 2, auth={"enabled": True})
            # The first start writes the packages' .pyc (above).
            env = {**without_bytecode_opt_out(os.environ), "DOCKYARD_ADMIN_PASSWORD": PASSWORD}
            env.update(dockyard_environment(source))
            argv = [*dockyard_command(source), "serve", "--config", str(config)]
            variants[name] = (argv, env, port, workdir / "server.log")
            start_and_stop(*variants[name])  # the first start initialises the data directory
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
        for _ in range(options.rounds):
            for name, variant in variants.items():
                times[name].append(start_and_stop(*variant))
                time.sleep(0.5)
    for name, runs in times.items():
        ups = [up for up, _, _ in runs]
        downs = [down for _, down, _ in runs]
        cpus = [cpu for _, _, cpu in runs]
        print(
            f"{name}: start until /v2/ answers {statistics.median(ups):.2f} s "
            f"(min {min(ups):.2f}, max {max(ups):.2f}); stop {statistics.median(downs):.2f} s "
            f"(max {max(downs):.2f}); CPU of start and stop {statistics.median(cpus):.2f} s "
            f"(min {min(cpus):.2f}, max {max(cpus):.2f}); median of {len(runs)}"
        )
    print(f"load average at the end: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
