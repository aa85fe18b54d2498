"""An HA deployment on loopback: PostgreSQL, Redis, SeaweedFS (S3), three `dockyard serve` nodes sharing
all of them and `http.secret`, and HAProxy (deploy/haproxy.cfg) in front. Every part is a real process
the tests can kill and start again on the same port, as an operator's supervisor would.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import zygote
from tests.support.haproxy import RunningHAProxy, start_haproxy
from tests.support.postgres import PostgresCluster, start_postgres
from tests.support.redis import RedisServer
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import DOCKYARD, RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "cluster-admin-password-1")
NODES = 3
S3_PART_SIZE = 5 * 1024 * 1024  # S3's minimum: uploads of a few MiB already span multipart parts
START_TIMEOUT = 60.0


@dataclass
class Cluster:
    workdir: Path
    postgres: PostgresCluster
    redis: RedisServer
    s3: RunningSeaweedFS
    nodes: list[RunningServer]
    proxy: RunningHAProxy

    def http(self, url: str | None = None, timeout: float | httpx.Timeout = HTTP_TIMEOUT) -> httpx.Client:
        """A client with the admin's credentials (basic auth: dockyard accepts it on /v2 as registry:2
        does), on HAProxy unless another URL is given."""
        return httpx.Client(base_url=url or self.proxy.url, auth=ADMIN, timeout=timeout)

    # --- nodes ----------------------------------------------------------------------------------
    def kill_node(self, index: int) -> None:
        """SIGKILL the node's whole process group (the serve process and its workers): no shutdown."""
        node = self.nodes[index]
        if node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=10)

    def restart_node(self, index: int) -> None:
        """Start the node again with its config (same port, so HAProxy's server line finds it), forked
        from the test process's zygote as start_server's are: a fresh interpreter importing serve's
        modules took ~25 s on a loaded machine, while the load went on and the node stayed down."""
        node = self.nodes[index]
        command = ["serve", "--config", str(node.config_path)]
        env, cwd = {**os.environ, **node.env}, node.config_path.parent
        if zygote.ENABLED:
            node.process = zygote.zygote().spawn(command, env, cwd, node.log_path, append=True)
        else:
            with node.log_path.open("ab") as log:
                node.process = subprocess.Popen([DOCKYARD, *command], stdout=log, stderr=subprocess.STDOUT,
                                                env=env, cwd=cwd, start_new_session=True)  # fmt: skip
        wait_until_ready(node)

    # --- backends -------------------------------------------------------------------------------
    def stop_postgres(self) -> None:
        """A fast shutdown (SIGINT): clients are disconnected, the data stays."""
        process = self.postgres.process
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    def start_postgres_again(self) -> None:
        """The same command line (data directory, port): what a supervisor's restart does."""
        previous = self.postgres.process
        as_user: dict[str, Any] = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        with (self.postgres.root / "postgres.log").open("ab") as log:
            self.postgres.process = subprocess.Popen(
                previous.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_user
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._postgres_answers():
            assert self.postgres.process.poll() is None, self.postgres.log()[-3000:]
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            time.sleep(0.1)

    def _postgres_answers(self) -> bool:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.postgres.database_url("postgres"))
        try:
            with engine.connect() as connection:
                return connection.execute(text("SELECT 1")).scalar_one() == 1
        except Exception:
            return False
        finally:
            engine.dispose()

    def wait_all_up(self, timeout: float = START_TIMEOUT) -> None:
        for index in range(len(self.nodes)):
            self.proxy.wait_for_state(node_name(index), up=True, timeout=timeout)

    def healthy(self) -> bool:
        """Every process running and HAProxy counting every node UP: what a test may start from."""
        if self.redis.process is None:
            return False
        backends = (self.postgres.process, self.redis.process, self.s3.process, self.proxy.process)
        if any(part.poll() is not None for part in (*backends, *(node.process for node in self.nodes))):
            return False
        try:
            return set(self.proxy.server_states().values()) == {"UP"}
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proxy.stop()
        with ThreadPoolExecutor() as pool:  # each node drains (SIGTERM) and stops on its own
            list(pool.map(RunningServer.stop, self.nodes))
        self.redis.kill()
        self.s3.stop()
        self.postgres.stop()


def node_name(index: int) -> str:
    return f"node{index + 1}"


def wait_until_ready(node: RunningServer, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"dockyard exited with {node.process.returncode}:\n{node.log()[-4000:]}")
        try:
            if httpx.get(f"{node.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{node.url} not ready after {timeout}s:\n{node.log()[-4000:]}")


def node_config(
    workdir: Path, database_url: str, redis: RedisServer, s3: RunningSeaweedFS, secret: str
) -> dict[str, Any]:
    """What every node shares (docs/ha.md, deploy/ha-config.example.yml); only datadir differs."""
    return {
        "http": {"secret": secret},
        "database": {"url": database_url},
        "redis": {"url": redis.url},
        "storage": {
            "s3": {
                "bucket": s3.bucket,
                "region": "us-east-1",
                "regionendpoint": s3.endpoint,
                "accesskey": s3.access_key,
                "secretkey": s3.secret_key,
                "rootdirectory": "/registry",
                "chunksize": S3_PART_SIZE,
                "forcepathstyle": True,
            },
            # Bytes flow through the nodes (as in the compose example), so killing one cuts pulls too.
            "redirect": {"disable": True},
            "delete": {"enabled": True},
        },
        "auth": {"enabled": True},
    }


def start_cluster(workdir: Path) -> Cluster:
    """The backends side by side (they know nothing of each other), then the three nodes side by side
    (they migrate the empty database under PostgreSQL's advisory lock: one does, the others wait and
    find it done, as compose's nodes may), then HAProxy once every node is ready."""
    started: list[Any] = []
    try:
        with ThreadPoolExecutor() as pool:
            backends = [pool.submit(start_postgres), pool.submit(_started_redis, workdir / "redis"),
                        pool.submit(start_seaweedfs, workdir / "seaweedfs")]  # fmt: skip
        started += [future.result() for future in backends if future.exception() is None]
        postgres, redis, s3 = (future.result() for future in backends)  # raises a start's error
        database_url = postgres.create_database().replace("postgresql+psycopg://", "postgresql://", 1)
        shared = node_config(workdir, database_url, redis, s3, secrets.token_hex(32))
        env = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
        nodes = []
        for index in range(NODES):
            node = start_server(workdir / node_name(index), shared, env=env, wait=False)
            started.append(node)
            nodes.append(node)
        for node in nodes:
            wait_until_ready(node)
        proxy = start_haproxy(workdir / "haproxy", [(node_name(i), n.host) for i, n in enumerate(nodes)])
        return Cluster(workdir, postgres, redis, s3, nodes, proxy)
    except BaseException:
        for part in reversed(started):
            part.kill() if isinstance(part, RedisServer) else part.stop()
        raise


def _started_redis(workdir: Path) -> RedisServer:
    redis = RedisServer(workdir)
    redis.start()
    return redis
