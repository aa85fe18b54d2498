"""Scan on push decides without I/O once it knows the project's setting: a manifest PUT into a project
known not to scan on push needs no worker-thread hop (`ManifestEffects.push_needed` is False), one
that scans, or whose setting is unknown or stale, still goes to `pushed`, which reads it."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.content import mediatypes
from dockyard.scans import pushes
from dockyard.scans.pushes import ScanOnPush

pytestmark = pytest.mark.db_independent
DIGEST = "sha256:" + "ab" * 32


class Settings:
    def __init__(self, **projects: bool) -> None:
        self.projects = projects
        self.reads = 0
        self.requested: list[tuple[str, str]] = []

    def scan_on_push(self, project: str) -> bool:
        self.reads += 1
        return self.projects.get(project, False)

    def request(self, repository: str, digest: str) -> int:
        self.requested.append((repository, digest))
        return len(self.requested)


def wanted(scans: ScanOnPush, repository: str) -> bool:
    return scans.wanted(repository, "v1", mediatypes.OCI_MANIFEST, None)


def test_a_project_known_not_to_scan_on_push_is_not_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(scanning=True)
    scans = ScanOnPush(lambda: settings)  # type: ignore[arg-type,return-value]
    assert wanted(scans, "quiet/app")  # unknown: `pushed` reads the setting
    assert scans.pushed("quiet/app", DIGEST) is None
    assert not wanted(scans, "quiet/app")  # known off: no hop
    assert not wanted(scans, "quiet/other")  # the setting is the project's
    assert wanted(scans, "scanning/app")
    assert scans.pushed("scanning/app", DIGEST) == 1
    assert wanted(scans, "scanning/app")  # known on: the job is queued
    assert settings.requested == [("scanning/app", DIGEST)]
    assert settings.reads == 2
    now: Any = pushes.time.monotonic() + pushes.SETTING_TTL + 1
    monkeypatch.setattr(pushes.time, "monotonic", lambda: now)
    assert wanted(scans, "quiet/app")  # stale: read again
