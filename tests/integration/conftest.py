"""Fixtures for the HTTP-level OCI Distribution tests (the servers come from tests/conftest.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.ociclient import OCIClient


@pytest.fixture
def oci(client: httpx.Client) -> OCIClient:
    return OCIClient(client)
