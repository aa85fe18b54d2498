"""The first administrator: random password in a 0600 file, or DOCKYARD_ADMIN_PASSWORD; idempotent."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dockyard.accounts.bootstrap import bootstrap_admin
from dockyard.accounts.interfaces import WeakPassword
from tests.unit.accounts.fixtures import PASSWORD, Services


def test_random_password_is_returned_once_and_kept_in_a_private_file(
    services: Services, tmp_path: Path
) -> None:
    datadir = tmp_path / "data"
    old_umask = os.umask(0)
    try:
        password = bootstrap_admin(services.users, datadir, None)
    finally:
        os.umask(old_umask)
    assert password is not None and len(password) >= 20
    path = datadir / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == password
    admin = services.users.verify_password("admin", password)
    assert admin is not None and admin.is_admin
    assert sorted(p.name for p in datadir.iterdir()) == ["admin-password"]  # no leftovers


def test_second_start_changes_nothing(services: Services, tmp_path: Path) -> None:
    password = bootstrap_admin(services.users, tmp_path, None)
    before = (tmp_path / "admin-password").stat()
    assert bootstrap_admin(services.users, tmp_path, None) is None
    assert bootstrap_admin(services.users, tmp_path, "another password") is None
    assert (tmp_path / "admin-password").stat().st_mtime_ns == before.st_mtime_ns
    assert services.users.count() == 1
    assert password is not None and services.users.verify_password("admin", password) is not None


def test_environment_password_is_used_and_not_written(services: Services, tmp_path: Path) -> None:
    assert bootstrap_admin(services.users, tmp_path, PASSWORD) is None
    assert not (tmp_path / "admin-password").exists()
    assert services.users.verify_password("admin", PASSWORD) is not None


def test_weak_environment_password_is_refused(services: Services, tmp_path: Path) -> None:
    with pytest.raises(WeakPassword, match="DOCKYARD_ADMIN_PASSWORD"):
        bootstrap_admin(services.users, tmp_path, "admin")
    assert services.users.count() == 0


def test_no_admin_is_made_when_users_exist(services: Services, tmp_path: Path) -> None:
    services.users.create("alice", PASSWORD)
    assert bootstrap_admin(services.users, tmp_path, None) is None
    assert services.users.find("admin") is None and not (tmp_path / "admin-password").exists()


def test_concurrent_starts_make_one_admin_and_one_file(services: Services, tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: bootstrap_admin(services.users, tmp_path, None), range(4)))
    passwords = [p for p in results if p is not None]
    assert len(passwords) == 1
    assert services.users.count() == 1
    assert (tmp_path / "admin-password").read_text().strip() == passwords[0]
    assert services.users.verify_password("admin", passwords[0]) is not None
    assert sorted(p.name for p in tmp_path.iterdir() if "admin" in p.name) == ["admin-password"]
