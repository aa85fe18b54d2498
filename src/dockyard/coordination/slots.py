"""Places in pools of limited size shared by the processes of one node: files in the datadir
(`FileSlots`, `interfaces.Slots`). `slots_redis.RedisSlots` shares them with every node; the contract
both keep is checked by `conformance.SlotsConformance`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from dockyard.coordination.interfaces import Pool


class FileSlots:
    """`<directory>/<hash of the pool's name>.json` holds the pool's places ({holder: expiry, wall
    clock}); every claim and release runs under one flock (`<directory>/.lock`), so claims of several
    pools never interleave. Uploads start far less often than requests come: the lock is not hot."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def claim(self, pools: Sequence[Pool], holder: str, ttl: float) -> str | None:
        now = self.clock()
        with self._locked():
            places = {name: self._read(name, now) for name, _ in pools}
            for name, size in pools:
                if holder not in places[name] and len(places[name]) >= size:
                    return name
            for name, _ in pools:
                places[name][holder] = now + ttl
                self._write(name, places[name])
        return None

    def release(self, names: Sequence[str], holder: str) -> None:
        now = self.clock()
        with self._locked():
            for name in names:
                places = self._read(name, now)
                if places.pop(holder, None) is not None:
                    self._write(name, places)

    def _path(self, name: str) -> Path:
        return self.directory / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.json"

    def _read(self, name: str, now: float) -> dict[str, float]:
        try:
            data = json.loads(self._path(name).read_bytes())
        except (OSError, ValueError):
            return {}  # none yet, or a torn file: nobody's places
        if not isinstance(data, dict):
            return {}
        return {h: float(e) for h, e in data.items() if isinstance(e, int | float) and e > now}

    def _write(self, name: str, places: dict[str, float]) -> None:
        path = self._path(name)
        if not places:
            path.unlink(missing_ok=True)
            return
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(places))
        os.replace(temporary, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
