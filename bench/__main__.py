"""`python -m bench`: dockyard vs distribution 2.8.2 and v3.1.1, side by side. See docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.authmode import NULL_SERVER_AUTH, auth_scenarios, seed_with_auth, start_auth_servers
from bench.ha import BACKEND_CAPTION as HA_CAPTION
from bench.ha import PROXIED, seed_ha, start_ha_servers
from bench.report import markdown, print_table, rows
from bench.runner import WorkDir, machine_caption, run_side_by_side, stopping
from bench.scenarios import RunSettings, build_scenarios, ha_scenarios
from bench.selfcheck import self_check
from bench.servers import (
    Server,
    describe_source,
    resolve_rev,
    snapshot_source,
    start_dockyard,
    start_nullserver,
    start_references,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per scenario (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of short runs: a smoke test, not figures"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="dockyard worker processes")
    parser.add_argument("--engine", choices=["threads", "asyncio"], default="threads", help="load generator")
    parser.add_argument("--transfer-seconds", type=float, default=3.0, help="length of each push/pull run")
    parser.add_argument("--small-seconds", type=float, default=5.0, help="length of each wrk/ab run")
    parser.add_argument(
        "--small-tool",
        choices=["auto", "ab"],
        default="auto",
        help="auto: GETs on wrk, HEADs on ab (wrk cannot HEAD); ab: every small request on ab",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only scenarios whose key contains TEXT (repeatable), e.g. pull, manifest",
    )
    parser.add_argument(
        "--candidate",
        choices=["dockyard", "null"],
        default="dockyard",
        help="what to compare with the distributions: dockyard, or the do-nothing null registry",
    )
    parser.add_argument(
        "--dockyard-rev",
        metavar="REV",
        help="run dockyard from this git revision's src/ (git archive) instead of the working tree",
    )
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table to FILE")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="run the scenarios against the null registry only and print the generator's ceiling",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="run the authentication scenarios (distribution with htpasswd, dockyard with token auth "
        "and in htpasswd mode) instead of the open ones",
    )
    parser.add_argument(
        "--backend",
        choices=["local", "ha"],
        default="local",
        help="dockyard's stores: local (SQLite + filesystem) or ha (PostgreSQL + Redis + S3 on SeaweedFS, "
        "the core scenarios only; see bench/ha.py)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    parser.add_argument(
        "--gc",
        action="store_true",
        help="run the garbage collection scenario instead (bench/gc.py: GC of 100,000 blobs under GETs)",
    )
    parser.add_argument(
        "--gc-alone",
        action="store_true",
        help="--gc: seed and collect only (no server, no GETs), for the collector's CPU per blob",
    )
    parser.add_argument(
        "--gc-db", choices=["sqlite", "postgresql"], default="sqlite", help="database for --gc"
    )
    parser.add_argument(
        "--gc-seconds", type=float, default=15.0, help="--gc: length of the GET run without GC"
    )
    parser.add_argument(
        "--gc-manifests",
        type=int,
        default=20_000,
        help="--gc: manifests seeded, 5 blobs each, half of them garbage (default 20,000)",
    )
    parser.add_argument(
        "--gc-seeded",
        metavar="DIR",
        type=Path,
        help="--gc on SQLite: seed the set into DIR the first time, and copy it from there on each run",
    )
    parser.add_argument(
        "--gc-sessions",
        choices=["shared", "apart"],
        default="shared",
        help="--gc: the server in the collector's session (shared: the collector's nice +10 ranks it "
        "below the workers, as in serve) or in its own (apart, as before 2026-12-07; bench/gc.py)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="run the scale scenario instead (bench/scale.py: N repositories, against v3.1.1)",
    )
    parser.add_argument(
        "--scale-repos", type=int, default=50_000, help="--scale: repositories (default 50,000)"
    )
    parser.add_argument(
        "--scale-tags", type=int, default=10_000, help="--scale: tags of the one tagged repository"
    )
    parser.add_argument(
        "--scale-db", choices=["sqlite", "postgresql"], default="sqlite", help="--scale: dockyard's database"
    )
    parser.add_argument(
        "--scale-cache",
        metavar="SIZE",
        help="--scale: dockyard's storage.cache.memory (e.g. 0: every manifest GET and blob HEAD misses)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.transfer_seconds, args.small_seconds = 1.5, 2.0
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.gc:
        return _gc_bench(args)
    if args.scale:
        return _scale_bench(args)
    settings = RunSettings(args.engine, args.transfer_seconds, args.small_seconds, small_tool=args.small_tool)
    if args.auth and args.candidate != "dockyard":
        progress("--auth compares dockyard only (the null registry has no auth)")
        return 2
    if args.backend == "ha" and (args.auth or args.candidate != "dockyard"):
        progress("--backend ha compares dockyard (no auth) only")
        return 2
    suite = auth_scenarios() if args.auth else build_scenarios()
    suite = ha_scenarios(PROXIED) if args.backend == "ha" else suite
    scenarios = [s for s in suite if not args.only or any(text in s.key for text in args.only)]
    if not scenarios:
        progress(f"no scenario matches {args.only}")
        return 2
    if args.dockyard_rev:  # pin it now: HEAD may move while the bench runs
        args.dockyard_rev = resolve_rev(args.dockyard_rev)
    with WorkDir(args.keep) as workdir:
        if args.keep:
            progress(f"data dirs and logs in {workdir}")
        if args.self_check:
            self_check(scenarios, settings, workdir, progress, NULL_SERVER_AUTH if args.auth else None)
            return 0
        with ExitStack() as stack:
            source = snapshot_source(args.dockyard_rev, workdir / "rev") if args.dockyard_rev else None
            alternates: dict[str, Server] = {}
            seeder = None
            if args.auth:
                references, candidate, alternates = start_auth_servers(stack, workdir, args.workers, source)
                seeder = seed_with_auth
            elif args.backend == "ha":
                references, candidate, alternates = start_ha_servers(stack, workdir, args.workers, source)
                seeder = seed_ha
            else:
                references = [stopping(stack, server) for server in start_references(workdir)]
                if args.candidate == "dockyard":
                    candidate = stopping(stack, start_dockyard(workdir / "dockyard", args.workers, source))
                else:
                    candidate = stopping(stack, start_nullserver(workdir / "null"))
            outcomes, peaks = run_side_by_side(
                scenarios, references, candidate, settings, args.rounds, progress, alternates, seeder
            )
        bases, cand = [server.name for server in references], candidate.name
        table = rows(outcomes, peaks, bases, cand)
        code = describe_source(args.dockyard_rev) if args.candidate == "dockyard" else "bench/nullserver.py"
        caption = machine_caption(settings, args.rounds, args.workers, cand, code)
        caption += f" {HA_CAPTION}" if args.backend == "ha" else ""
        notes = [note for outcome in outcomes for note in outcome.notes(cand)]
        print_table(table, bases, cand, caption, notes)
        if args.markdown:
            args.markdown.write_text(markdown(table, bases, cand, caption, notes))
            progress(f"wrote {args.markdown}")
        errors = sum(outcome.errors() for outcome in outcomes)
        if errors:
            progress(f"{errors} requests failed: the figures above include failures, see the notes")
            # The data dirs go with the work dir: keep what the server said about the failures.
            progress(f"{cand}'s log, last lines:\n{candidate.log_tail(80)}")
    return 1 if errors else 0


def _gc_bench(args: argparse.Namespace) -> int:
    from bench.gc import run_gc_alone, run_gc_bench

    with WorkDir(args.keep) as workdir:
        if args.gc_alone:
            alone = run_gc_alone(workdir, args.gc_db, progress, args.gc_manifests)
            print("\n".join(alone.lines()), flush=True)
            return 0
        if args.gc_seeded is not None and args.gc_db != "sqlite":
            progress("--gc-seeded copies a SQLite data dir: not with --gc-db postgresql")
            return 2
        result = run_gc_bench(
            workdir,
            args.workers,
            args.gc_db,
            args.gc_seconds,
            progress,
            args.gc_manifests,
            seeded=args.gc_seeded,
            shared_session=args.gc_sessions == "shared",
        )
        print("\n".join(result.lines()), flush=True)  # before removing 50,000 files takes its while
    return 1 if result.without.errors or result.during.errors or result.after.errors else 0


def _scale_bench(args: argparse.Namespace) -> int:
    from bench.scale import ScaleSettings, lines, run_scale_bench

    rev = resolve_rev(args.dockyard_rev) if args.dockyard_rev else None
    with WorkDir(args.keep) as workdir:
        source = snapshot_source(rev, workdir / "rev") if rev else None
        settings = ScaleSettings(
            repositories=args.scale_repos,
            tags=args.scale_tags,
            rounds=args.rounds,
            seconds=args.small_seconds,
            write_seconds=args.small_seconds,
            database=args.scale_db,
            workers=args.workers,
            source=source,
            cache_memory=args.scale_cache,
            logs=_scale_logs(args),
        )
        result = run_scale_bench(workdir, settings, progress)
        caption = (
            f"{machine_caption(RunSettings(), args.rounds, args.workers, 'dockyard', describe_source(rev))} "
            f"dockyard on {args.scale_db}"
            + ("" if args.scale_cache is None else f" with storage.cache.memory {args.scale_cache}")
            + "; distribution v3.1.1 on its filesystem."
        )
        text = "\n".join(lines(result, settings, caption)) + "\n"
        print(text, flush=True)
        if args.markdown:
            args.markdown.write_text(text)
    errors = sum(row.outcome.errors() for row in result.rows)
    return 1 if errors else 0


def _scale_logs(args: argparse.Namespace) -> Path:
    """Where the scale run keeps the servers' logs: beside the --markdown file, else in the temp dir."""
    if args.markdown:  # a second run into the same file replaces them, as it replaces the file
        return args.markdown.parent / f"{args.markdown.stem}-logs"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(tempfile.gettempdir()) / f"dockyard-scale-{args.scale_repos}-{args.scale_db}-{stamp}-logs"


if __name__ == "__main__":
    sys.exit(main())
