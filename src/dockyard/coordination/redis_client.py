"""The one Redis client factory (`interfaces.RedisConnect`): every Redis-backed part of dockyard
(change feed, locks, login limiter) gets its client here, for every URL form redis.url accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

TIMEOUT = 2.0  # seconds: a command or connection attempt to a Redis that went away
_HEALTH_CHECK_SECONDS = 5  # an idle connection (the feed's subscription) PINGs, so a dead peer is noticed


def connect(url: str) -> redis.Redis:
    """A client for redis://, rediss:// (TLS), unix:// or a Sentinel-managed master:
    redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE_NAME[/DB]
    (rediss+sentinel:// talks TLS to the master; the password is the master's and the sentinels')."""
    options: dict[str, Any] = {
        "socket_connect_timeout": TIMEOUT,
        "socket_timeout": TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": _HEALTH_CHECK_SECONDS,
    }
    scheme = url.partition("://")[0].lower()
    if not scheme.endswith("+sentinel"):
        return redis.Redis.from_url(url, **options)
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        sentinels.append((host.strip("[]") or "127.0.0.1", int(port or 26379)))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise ValueError("a Sentinel URL names the service: redis+sentinel://HOST:PORT/SERVICE_NAME[/DB]")
    credentials: dict[str, Any] = {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={**credentials, "socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
        **credentials,
        **options,
    )
    db = int(path[1]) if len(path) > 1 else 0
    client: redis.Redis = sentinel.master_for(path[0], db=db, ssl=scheme.startswith("rediss"))
    return client
