"""The TLS side of the guarded transport every remote client is built on (replication, endpoint checks,
scanners, webhooks): the system's CA store is loaded once per process and set of TLS options, not once
per client (~25 ms of CPU each), and options never leak between the contexts they share."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.interfaces import TLSOptions
from dockyard.upstream.transport import guarded_transport, ssl_context
from tests.support.cosign import make_ca

pytestmark = pytest.mark.db_independent


def test_clients_with_the_same_tls_options_load_the_system_cas_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ssl_context.cache_clear()
    loads: list[object] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: loads.append(a) or real(*a, **k))
    guard = AddressGuard(["127.0.0.0/8"])
    for _ in range(3):
        guarded_transport(guard, TLSOptions()).close()
        guarded_transport(guard, TLSOptions(verify=False)).close()
    assert len(loads) == 2  # one per set of options


def test_skipping_verification_for_one_client_leaves_the_others_verifying() -> None:
    verifying = ssl_context(TLSOptions())
    skipping = ssl_context(TLSOptions(verify=False))
    again = ssl_context(TLSOptions())
    assert skipping.verify_mode == ssl.CERT_NONE and not skipping.check_hostname
    assert again is verifying
    assert again.verify_mode == ssl.CERT_REQUIRED and again.check_hostname


def test_an_extra_ca_is_trusted_by_the_clients_that_name_it_only(tmp_path: Path) -> None:
    pem = make_ca(tmp_path, "extra-ca").pem
    with_ca = ssl_context(TLSOptions(ca_pem=pem))
    without = ssl_context(TLSOptions())
    extra = ssl.PEM_cert_to_DER_cert(pem)
    assert extra in with_ca.get_ca_certs(binary_form=True)
    assert extra not in without.get_ca_certs(binary_form=True)
    assert ssl_context(TLSOptions(ca_pem=pem)) is with_ca
