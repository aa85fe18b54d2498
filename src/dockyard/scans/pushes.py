"""Scan on push: after a manifest push to a project with `scan_on_push`, a `scan` job is queued (the
scan itself runs on a job worker, never in the request). Each project's setting is cached for
SETTING_TTL seconds per process, so a push costs a dictionary lookup and, when the project scans on
push, the job's insert. The scans' service (with its models) is built on the first push that reads a
setting: not before serve forks its workers, where it cost each start ~20 ms of CPU (issue 18)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.content import mediatypes as mt
from dockyard.projects.rbac import project_of

if TYPE_CHECKING:
    from dockyard.scans.services import Scans

log = logging.getLogger("dockyard.scans")
SETTING_TTL = 5.0  # seconds a project's scan_on_push is remembered
MAX_REMEMBERED = 10_000
SCANNED_TYPES = mt.MANIFEST_TYPES  # images and indexes (each platform of an index is pushed too)
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")  # cosign's signature, attestation and SBOM tags


class ScanOnPush:
    def __init__(self, scans: Callable[[], Scans]) -> None:
        self._build_scans = scans  # called once, on the first push whose project's setting is read
        self._scans: Scans | None = None
        self._settings: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def wanted(self, repository: str, reference: str, media_type: str, subject: str | None) -> bool:
        """Whether a push like this may be scanned (no I/O): images and indexes, not referrers
        (signatures, SBOMs) nor cosign's tags, in a repository of a project that scans on push or
        whose setting this process does not know (`pushed` reads it, in a worker thread). A project
        known not to scan on push costs the manifest PUT no thread hop."""
        if subject or media_type not in SCANNED_TYPES or "/" not in repository:
            return False
        if reference.endswith(COSIGN_SUFFIXES):
            return False
        known = self._settings.get(project_of(repository))  # a dict read: no lock needed
        return known is None or known[0] or known[1] <= time.monotonic()

    def pushed(self, repository: str, digest: str) -> int | None:
        """Queue the scan if the repository's project scans on push; the job's id. Runs in a worker
        thread. A failure is logged, never fails the push (the manifest is stored already)."""
        project = project_of(repository)
        try:
            if not self._scan_on_push(project):
                return None
            return self.scans.request(repository, digest)
        except Exception:
            log.exception("scan on push of %s@%s not queued", repository, digest)
            return None

    @property
    def scans(self) -> Scans:
        if self._scans is None:  # two threads may both build it: the same service, no state of its own
            self._scans = self._build_scans()
        return self._scans

    def _scan_on_push(self, project: str) -> bool:
        now = time.monotonic()
        with self._lock:
            known = self._settings.get(project)
        if known is not None and known[1] > now:
            return known[0]
        value = self.scans.scan_on_push(project)
        with self._lock:
            if len(self._settings) >= MAX_REMEMBERED:
                self._settings.clear()
            self._settings[project] = (value, now + SETTING_TTL)
        return value
