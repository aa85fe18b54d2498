"""`dockyard trust`: the public keys a project trusts for signatures, and the signature verdict on an
artifact (docs/security.md, "Signatures").

Runs on the metadata database and storage of the config `serve` reads (like `dockyard scan`); the
same is in the management API under /api/v1/projects/{project}/signing-keys and
/api/v1/repositories/{name}/artifacts/{reference}/signature. Only typer loads at import time.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

trust_app = typer.Typer(
    help="Signatures: the keys a project trusts, and whether an artifact's signature verifies.",
    no_args_is_help=True,
)
key_app = typer.Typer(
    help="A project's trusted public keys (cosign) and certificates (notation).", no_args_is_help=True
)
trust_app.add_typer(key_app, name="key")
policy_app = typer.Typer(
    help="A project's notation trust policy (notation's trustpolicy.json).", no_args_is_help=True
)
trust_app.add_typer(policy_app, name="policy")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"dockyard: {message}", err=True)
    raise typer.Exit(code)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def _keys(config: Path | None) -> Any:
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.signatures.keys import TrustedKeys

    settings = _settings(config)
    return TrustedKeys(Database(build_engine(settings.database_url)), lambda: _tell_servers(settings))


def _reverify(config: Path | None, project: str) -> None:
    """A project that requires signatures: queue the verification of its artifacts with the new keys."""
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.jobs.queue import JobQueue
    from dockyard.signatures.tasks import queue_reverification

    settings = _settings(config)
    db = Database(build_engine(settings.database_url))
    with servers_feed(settings) as feed:  # the servers' job workers start it now, not at their next poll
        if queue_reverification(db, JobQueue(db, feed=feed).enqueue, project):
            typer.echo(f"{project} requires signatures: its artifacts are verified again (a job)")


def _tell_servers(settings: Any) -> None:
    """A key changed: the servers' pull gates must decide again (Topic.VERDICTS on their feed)."""
    from dockyard.coordination.interfaces import Topic

    with servers_feed(settings) as feed:
        if feed is not None:
            feed.bump(Topic.VERDICTS)


@contextlib.contextmanager
def servers_feed(settings: Any) -> Iterator[Any]:
    """The change feed the servers follow (Redis, or the node's change file; None: neither), for a
    command that changes what they cache or queues jobs (`JobQueue(db, feed=...)`: their job workers
    start them at once)."""
    from dockyard.bootstrap import local_change_feed_path

    if settings.redis.url:
        from dockyard.coordination.feeds_redis import RedisChangeFeed
        from dockyard.coordination.redis_client import connect

        feed = RedisChangeFeed(connect(settings.redis.url))
        try:
            yield feed
        finally:
            feed.close()
        return
    path = local_change_feed_path(settings)
    if path is None:
        yield None
        return
    from dockyard.coordination.feeds import LocalChangeFeed

    yield LocalChangeFeed(path)


@key_app.command("list")
def list_keys(
    project: Annotated[str, typer.Argument(help="The project.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The project's trusted keys and the key set's version."""
    from dockyard.errors import DockyardError

    try:
        keyset = _keys(config).keyset(project)
    except DockyardError as exc:
        _fail(exc.message)
    if as_json:
        out = {"version": keyset.version, "keys": [key.as_dict() for key in keyset.keys]}
        typer.echo(_dump(out))
        return
    typer.echo(f"{project}: key set version {keyset.version}, {len(keyset.keys)} keys")
    for key in keyset.keys:
        typer.echo(f"  {key.name}  {key.algorithm}  {key.fingerprint}  added by {key.created_by}")


@key_app.command("add")
def add_key(
    project: Annotated[str, typer.Argument(help="The project.")],
    name: Annotated[str, typer.Argument(help="A name for the key (letters, digits, . _ - @).")],
    path: Annotated[Path, typer.Argument(help="The PEM public key file (cosign.pub); - for stdin.")],
    trust_store: Annotated[
        str | None,
        typer.Option(
            "--trust-store", help="A certificate's named notation trust store (default: the key's name)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Trust a public key (ECDSA P-256/P-384, RSA, Ed25519) for the project's cosign signatures, or a
    certificate (X.509 PEM) as a trust-store entry for its notation signatures."""
    from dockyard.errors import DockyardError

    try:
        pem = sys.stdin.read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: {exc}")
    try:
        key = _keys(config).add(project, name, pem, "cli", trust_store)
    except DockyardError as exc:
        _fail(exc.message)
    _reverify(config, project)
    typer.echo(f"{project}: trusts {key.name} ({key.algorithm} {key.fingerprint})")


@key_app.command("delete")
def delete_key(
    project: Annotated[str, typer.Argument(help="The project.")],
    name: Annotated[str, typer.Argument(help="The key's name.")],
    config: ConfigOption = None,
) -> None:
    """Stop trusting a key: verdicts it gave are not read again (the key set's version changes)."""
    from dockyard.errors import DockyardError

    try:
        _keys(config).delete(project, name)
    except DockyardError as exc:
        _fail(exc.message)
    _reverify(config, project)
    typer.echo(f"{project}: no longer trusts {name}")


@policy_app.command("show")
def show_policy(
    project: Annotated[str, typer.Argument(help="The project.")], config: ConfigOption = None
) -> None:
    """Print the project's trust policy (JSON); exit 1 when it has none."""
    from dockyard.errors import DockyardError

    try:
        document = _keys(config).trust_policy(project)
    except DockyardError as exc:
        _fail(exc.message)
    typer.echo(_dump(json.loads(document)))


@policy_app.command("set")
def set_policy(
    project: Annotated[str, typer.Argument(help="The project.")],
    path: Annotated[Path, typer.Argument(help="A trustpolicy.json file; - for stdin.")],
    config: ConfigOption = None,
) -> None:
    """Set the project's notation trust policy (replacing any): validated as notation validates it."""
    from dockyard.errors import DockyardError

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: {exc}")
    try:
        _keys(config).set_trust_policy(project, text, "cli")
    except DockyardError as exc:
        _fail(exc.message)
    _reverify(config, project)
    typer.echo(f"{project}: trust policy set")


@policy_app.command("delete")
def delete_policy(
    project: Annotated[str, typer.Argument(help="The project.")], config: ConfigOption = None
) -> None:
    """Remove the trust policy: every certificate of the project's stores vouches for any signer."""
    from dockyard.errors import DockyardError

    try:
        _keys(config).delete_trust_policy(project)
    except DockyardError as exc:
        _fail(exc.message)
    _reverify(config, project)
    typer.echo(f"{project}: trust policy removed")


@trust_app.command("verify")
def verify(
    ref: Annotated[str, typer.Argument(help="REPOSITORY:TAG or REPOSITORY@DIGEST in this registry.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the artifact's cosign or notation signature verifies with its project's keys. Exit status:
    0 verified, 1 an error, 3 unsigned, 4 invalid (the reason is printed)."""
    from dockyard.cli.inventory import split_reference
    from dockyard.cli.main import _settings
    from dockyard.errors import DockyardError
    from dockyard.services import build_services
    from dockyard.signatures.services import Signatures

    repository, reference = split_reference(ref)
    services = build_services(settings=_settings(config))
    try:
        verdict = Signatures(
            services.db, services.registry, services.blobs, services.verdicts_changed
        ).verify(repository, reference)
    except DockyardError as exc:
        _fail(f"{ref}: {exc.message}")
    finally:
        services.close()
    if as_json:
        typer.echo(_dump(verdict.as_dict()))
    else:
        cached = " (cached)" if verdict.cached else ""
        typer.echo(f"{repository}@{verdict.digest}: {verdict.status}{cached}: {verdict.reason}")
    raise typer.Exit({"verified": 0, "unsigned": 3}.get(verdict.status, 4))
