"""`python -m bench.startup_profile CONFIG`: where `dockyard serve`'s main process spends its CPU before
Granian forks the HTTP workers (the serial part of a start: docs/benchmarks.md, "Start-up and stop").

Runs serve in this process as the `dockyard` command does (`cli.entry`), with Granian's `serve` and the
job runner's start replaced, and prints `time.process_time()` at the end of each step, then the self CPU
of the imports by package: each module's own import, without the modules it imports in turn (as `python
-X importtime`'s "self", but CPU rather than wall time, so a loaded machine moves it less). The import
hook costs a little itself. CONFIG is a config file whose data directory serve has started on once (it
migrates and makes the first administrator otherwise, in its start-up child); `--rounds N` runs N fresh
interpreters and prints the medians.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import textwrap

from bench.servers import without_bytecode_opt_out

# Run in a fresh interpreter: the figures are of a start, with nothing imported before it.
PROFILED_START = textwrap.dedent(
    """
    import json, os, sys, time
    import importlib._bootstrap as bootstrap

    imports = []  # (self CPU, module)
    nested = []
    find_and_load = bootstrap._find_and_load

    def timed_find_and_load(name, import_):
        if name in sys.modules:
            return find_and_load(name, import_)
        started = time.process_time()
        nested.append(0.0)
        try:
            return find_and_load(name, import_)
        finally:
            spent = time.process_time() - started
            inner = nested.pop()
            if nested:
                nested[-1] += spent
            imports.append((spent - inner, name))

    bootstrap._find_and_load = timed_find_and_load
    steps = []
    try:  # as cli.entry does first (an older commit has no such module)
        from dockyard.cli.startup_cache import install
    except ImportError:
        pass
    else:
        install()
    import granian

    def stop_before_the_fork(server):
        steps.append(("Granian built, before its fork", time.process_time()))
        print(json.dumps({"steps": steps, "imports": imports}), flush=True)
        os._exit(0)

    granian.Granian.serve = stop_before_the_fork
    steps.append(("Python started, Granian imported", time.process_time()))
    from dockyard.cli import server

    steps.append(("serve's own modules imported (the settings' classes among them)", time.process_time()))
    server.start_job_worker = lambda settings: None  # it starts after the fork, in its own process
    labels = {
        "_import_for_prepare": "settings read; _import_for_prepare (SQLAlchemy, models, accounts)",
        "_preload_worker_modules": "_preload_worker_modules (the rest of the app)",
    }
    for name, label in labels.items():
        def step(*args, _run=getattr(server, name), _label=label):
            _run(*args)
            steps.append((_label, time.process_time()))
        setattr(server, name, step)
    from dockyard.cli.entry import main

    sys.argv = ["dockyard", "serve", "--config", sys.argv[1]]
    main()
    """
)


def package_of(module: str) -> str:
    """dockyard and SQLAlchemy by subpackage, the others by top-level package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("dockyard", "sqlalchemy") else parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_profile", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=30, help="packages listed")
    options = parser.parse_args()
    steps: dict[str, list[float]] = collections.defaultdict(list)
    packages: dict[str, list[float]] = collections.defaultdict(list)
    # As bench.startup: Python writes the .pyc files it reads (the first round), also where the shell
    # sets PYTHONDONTWRITEBYTECODE; each round compiled SQLAlchemy, pydantic and the rest otherwise.
    environment = without_bytecode_opt_out(os.environ)
    warm_up = [sys.executable, "-c", PROFILED_START, options.config]
    subprocess.run(warm_up, env=environment, capture_output=True, check=True)
    for _ in range(options.rounds):
        completed = subprocess.run(
            [sys.executable, "-c", PROFILED_START, options.config],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        )
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        previous = 0.0
        for label, at in result["steps"]:
            steps[label].append(at - previous)
            previous = at
        by_package: collections.Counter[str] = collections.Counter()
        for spent, module in result["imports"]:
            by_package[package_of(module)] += spent
        for package in set(packages) | set(by_package):
            packages[package].append(by_package[package])
    print(f"serve's main process up to Granian's fork, CPU ms (median of {options.rounds}):")
    for label, spent in steps.items():
        print(f"  {statistics.median(spent) * 1000:7.1f}  {label}")
    total = sum(statistics.median(spent) for spent in steps.values())
    print(f"  {total * 1000:7.1f}  in all")
    print("self CPU of the imports by package, ms (median):")
    medians = {package: statistics.median(spent) for package, spent in packages.items()}
    for package, spent in sorted(medians.items(), key=lambda item: -item[1])[: options.top]:
        print(f"  {spent * 1000:7.1f}  {package}")
    print(f"  {sum(medians.values()) * 1000:7.1f}  every import")


if __name__ == "__main__":
    main()
