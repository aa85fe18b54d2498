"""PostgreSQL transactions send their BEGIN when they begin, and that BEGIN, not a ping at every
checkout (`pool_pre_ping`, a round trip more), is what finds a connection the server dropped: a read
or a write right after a restart or a failover still succeeds, on a new connection (db.engine,
db.session)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.db_independent  # PostgreSQL's own behaviour, whatever the pass's database

TERMINATE_THE_OTHERS = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[Database]:
    db = Database(build_engine(postgres_server.create_database("begin")))
    with db.write() as connection:
        connection.execute(text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"))
    yield db
    db.dispose()


def drop_every_connection(db: Database) -> int:
    """Terminate the server processes of every connection to db's database (a restart's effect on
    them), from a connection of another engine; how many were dropped."""
    other = create_engine(db.engine.url, poolclass=NullPool)
    try:
        with other.begin() as connection:
            return int(connection.execute(TERMINATE_THE_OTHERS).scalar_one())
    finally:
        other.dispose()


def server_status(connection: Connection) -> TransactionStatus:
    return TransactionStatus(connection.connection.driver_connection.info.transaction_status)


def test_begin_starts_the_transaction_on_the_server_with_its_options(postgres_db: Database) -> None:
    with postgres_db.engine.connect() as connection:
        connection.begin()
        assert server_status(connection) == TransactionStatus.INTRANS  # before any statement
        connection.rollback()
    options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with postgres_db.engine.connect().execution_options(**options) as connection, connection.begin():
        assert server_status(connection) == TransactionStatus.INTRANS
        assert connection.execute(text("SHOW transaction_isolation")).scalar_one() == "repeatable read"
        assert connection.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
    autocommit = postgres_db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as connection, connection.begin():
        assert server_status(connection) == TransactionStatus.IDLE  # no BEGIN in autocommit
        connection.execute(text("INSERT INTO notes (body) VALUES ('autocommitted')"))
        assert server_status(connection) == TransactionStatus.IDLE
    with postgres_db.read() as connection:
        assert connection.execute(text("SELECT body FROM notes")).scalars().all() == ["autocommitted"]


def test_no_connection_is_pinged_when_it_is_checked_out(postgres_db: Database) -> None:
    engine = postgres_db.engine
    pings: list[object] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(connection) or ping(connection)  # type: ignore[method-assign]
    for number in range(5):
        with postgres_db.write() as connection:
            connection.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"note {number}"})
        with postgres_db.read() as connection:
            assert connection.execute(text("SELECT count(*) FROM notes")).scalar_one() == number + 1
    assert pings == []


def test_reads_and_writes_right_after_the_server_dropped_every_connection_succeed(
    postgres_db: Database,
) -> None:
    """What a restart or a failover does to the pool's connections: each is gone, and the pool does not
    know until it uses one."""
    with ExitStack() as held:  # three connections at once: the pool keeps three
        for _ in range(3):
            held.enter_context(postgres_db.read()).execute(text("SELECT 1"))
    assert postgres_db.engine.pool.checkedin() == 3  # type: ignore[attr-defined]
    assert drop_every_connection(postgres_db) == 3
    for number in range(4):  # as many as the pool held dropped: each would be the next one used
        with postgres_db.write() as connection:
            connection.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"after {number}"})
    with postgres_db.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM notes")).scalar_one() == 4
    assert drop_every_connection(postgres_db) >= 1
    with postgres_db.read() as connection:  # a read, first after the drop
        assert connection.execute(text("SELECT count(*) FROM notes")).scalar_one() == 4
