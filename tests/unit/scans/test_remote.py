"""A scan request's authorization as the upstream credentials a remote scan pulls with."""

from __future__ import annotations

import base64

import pytest

from dockyard.scans.harbor import ScanRequestRefused
from dockyard.scans.remote import credentials_of
from dockyard.upstream.interfaces import Credentials


def test_basic_and_bearer_become_credentials() -> None:
    basic = "Basic " + base64.b64encode(b"robot$team+scan:pa:ss").decode()
    assert credentials_of(basic) == Credentials("basic", "robot$team+scan", "pa:ss")
    assert credentials_of("Bearer abc.def") == Credentials("token", "", "abc.def")
    assert credentials_of(None) is None and credentials_of("") is None


@pytest.mark.parametrize("header", ["Digest x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                                    "Bearer", "token"])  # fmt: skip
def test_other_schemes_are_refused(header: str) -> None:
    with pytest.raises(ScanRequestRefused):
        credentials_of(header)
