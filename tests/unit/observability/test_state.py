"""Scrape-time gauges: backend checks, free space and the TLS certificate's expiry."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from dockyard.observability.state import StateCollector


def samples(collector: StateCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = collector.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def ok() -> None:
    return None


def broken() -> None:
    raise ConnectionRefusedError("connection refused")


def test_backends_that_answer_read_up_and_the_node_ready() -> None:
    values = samples(StateCollector({"database": ok, "storage": ok}, required=("database", "storage")))
    assert values[("dockyard_up", (("check", "database"),))] == 1.0
    assert values[("dockyard_up", (("check", "storage"),))] == 1.0
    assert values[("dockyard_ready", ())] == 1.0
    assert values[("dockyard_check_duration_seconds", (("check", "database"),))] >= 0.0


def test_a_failing_required_backend_reads_down_and_the_node_unready() -> None:
    values = samples(StateCollector({"database": broken, "storage": ok}, required=("database", "storage")))
    assert values[("dockyard_up", (("check", "database"),))] == 0.0
    assert values[("dockyard_ready", ())] == 0.0
    assert ("dockyard_check_duration_seconds", (("check", "database"),)) not in values


def test_a_failing_optional_backend_leaves_the_node_ready() -> None:
    values = samples(StateCollector({"database": ok, "redis": broken}, required=("database",)))
    assert values[("dockyard_up", (("check", "redis"),))] == 0.0
    assert values[("dockyard_ready", ())] == 1.0


def test_a_hung_backend_reads_down_within_the_timeout_and_is_not_started_twice() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        release.wait(10)

    collector = StateCollector({"database": hangs}, required=("database",), timeout=0.05)
    try:
        for _ in range(3):  # three scrapes while the first check still hangs
            assert samples(collector)[("dockyard_up", (("check", "database"),))] == 0.0
        assert len(calls) == 1
    finally:
        release.set()


def test_free_space_is_reported_per_volume(tmp_path: Path) -> None:
    values = samples(StateCollector({}, volumes={"storage": tmp_path, "database": tmp_path / "missing"}))
    free = values[("dockyard_filesystem_free_bytes", (("volume", "storage"),))]
    size = values[("dockyard_filesystem_size_bytes", (("volume", "storage"),))]
    assert 0 < free <= size
    # A volume that cannot be read has no sample (rather than a 0 that would read as a full disk).
    assert ("dockyard_filesystem_free_bytes", (("volume", "database"),)) not in values


def self_signed(path: Path, not_after: datetime.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=90))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def test_the_certificate_expiry_is_the_file_on_disk_now(tmp_path: Path) -> None:
    path = tmp_path / "tls.crt"
    expires = datetime.datetime(2031, 5, 17, 12, 0, tzinfo=datetime.UTC)
    self_signed(path, expires)
    collector = StateCollector({}, certificate=path)
    assert (
        samples(collector)[("dockyard_tls_certificate_expiry_timestamp_seconds", ())] == expires.timestamp()
    )
    renewed = datetime.datetime(2032, 1, 1, tzinfo=datetime.UTC)
    self_signed(path, renewed)  # renewed in place: the next scrape sees the new date
    assert (
        samples(collector)[("dockyard_tls_certificate_expiry_timestamp_seconds", ())] == renewed.timestamp()
    )


def test_an_unreadable_certificate_has_no_sample(tmp_path: Path) -> None:
    path = tmp_path / "tls.crt"
    path.write_text("not a certificate")
    values = samples(StateCollector({}, certificate=path))
    assert not any(name == "dockyard_tls_certificate_expiry_timestamp_seconds" for name, _ in values)
