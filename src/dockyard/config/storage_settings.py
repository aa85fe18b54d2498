"""The `storage` section: the blob store's driver and its upkeep (a part of `settings.Settings`)."""

from pathlib import Path
from typing import Literal, Self, get_args

from pydantic import Field, field_validator, model_validator

from dockyard.config.base import PositiveDuration, Section, doc
from dockyard.config.durations import Duration
from dockyard.config.sizes import parse_size

# The storage drivers, each a section of `storage` (storage.driver's factories: tests/unit/storage checks
# they are the same).
DriverName = Literal["filesystem", "inmemory", "s3"]
DRIVER_NAMES: tuple[DriverName, ...] = get_args(DriverName)


class FilesystemStorage(Section):
    """Select the filesystem driver: the default when no driver is named."""

    rootdirectory: Path | None = Field(
        default=None,
        description="Where blob bytes and in-progress uploads are stored.",
        json_schema_extra=doc(default="`<datadir>/storage`"),
    )


class InMemoryStorage(Section):
    """Select the in-memory driver (`inmemory: {}` or `inmemory:`), for tests only: blobs vanish on
    restart, and so does the metadata, kept in `<datadir>/inmemory.db` and emptied at every start. Every
    worker process would have its own memory, so `serve` runs one worker whatever `http.workers` says
    (with a warning)."""


class DeleteSettings(Section):
    enabled: bool = Field(
        default=True,
        description="Allow `DELETE` of manifests, tags and blobs. When false they answer `405 UNSUPPORTED`. "
        "A delete unlinks; garbage collection reclaims the space ([gc.md](gc.md)).",
        json_schema_extra=doc(default="`true` (`false` in registry:2 files)"),
    )


class UploadPurging(Section):
    enabled: bool = Field(
        default=True, description="Remove abandoned upload sessions (database row and partial bytes)."
    )
    age: PositiveDuration = Field(
        default=Duration("24h"),
        description="Sessions untouched for longer than this are purged (registry:2's default is `168h`: a "
        "client resumes an upload within minutes or starts it again, and until purged an abandoned upload "
        "counts against its project's [quota](policies.md#storage-quotas)).",
        json_schema_extra=doc("duration"),
    )
    interval: PositiveDuration = Field(
        default=Duration("6h"),
        description="How often to purge: the `purge-uploads` job's default schedule, `@every <interval>` "
        "([jobs.md](jobs.md)); the first run is at the first start.",
        json_schema_extra=doc("duration"),
    )
    dryrun: bool = Field(default=False, description="Only log how many sessions would be purged.")


class UploadSettings(Section):
    max_size: int | str = Field(
        default="16GiB",
        description="The most one upload may hold before its digest is checked, so also the largest blob a "
        "push can bring (GHCR takes layers up to 10 GB, ECR up to 52,000 MiB). A body that would take an "
        "upload past it is refused with `413 BLOB_UPLOAD_INVALID`: before it is read when it declares its "
        "length, else where it passes the limit (the upload keeps what arrived). A size: `16GiB`, `500MB`, "
        "`1.5TiB` or bytes.",
        json_schema_extra=doc("size"),
    )

    @field_validator("max_size")
    @classmethod
    def _positive_size(cls, value: int | str) -> int | str:
        if parse_size(value) <= 0:
            raise ValueError(f"must be a positive size, got {value!r}")
        return value

    @property
    def max_size_bytes(self) -> int:
        return parse_size(self.max_size)


class ReadOnlySettings(Section):
    enabled: bool = Field(
        default=False,
        description="Read-only maintenance mode: pushes, mounts and deletes answer `405 UNSUPPORTED`; "
        "pulls work. `dockyard read-only on` switches a running registry without a restart "
        "([operations.md](operations.md#read-only-maintenance-mode)).",
    )


class MaintenanceSettings(Section):
    uploadpurging: UploadPurging = UploadPurging()
    readonly: ReadOnlySettings = ReadOnlySettings()


class CacheSettings(Section):
    blobdescriptor: str | None = Field(
        default=None,
        description="Accepted from registry:2 files; no effect (dockyard always caches in memory, per "
        "worker).",
    )
    memory: int | str = Field(
        default="32MiB",
        description="Memory each worker process gives its read caches: manifests by tag and by digest, tag "
        "list and catalog pages, blob sizes, each entry weighed by its bytes. A write drops the answers "
        "about its repository only, a tag's write those about the tag and the repository's tag lists "
        "(catalog pages: a new repository; docs/ha.md); such an answer is dropped when a lookup finds "
        "it. When they are full, the oldest 64th goes (first in, first out). `0` caches nothing: "
        "every manifest GET and blob HEAD reads the database (an indexed point read, about 10 µs of CPU "
        "on SQLite). A size: `32MiB`, `1GiB` or bytes.",
        json_schema_extra=doc("size"),
    )

    @field_validator("memory")
    @classmethod
    def _size(cls, value: int | str) -> int | str:
        if parse_size(value) < 0:
            raise ValueError(f"must be a size, got {value!r}")
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


class S3Storage(Section):
    """Select S3-compatible storage (AWS S3, Ceph RGW, SeaweedFS, MinIO) with registry:2's
    `storage.s3` keys below (any other, such as `encrypt` or `keyid`, is refused); from the environment,
    `REGISTRY_STORAGE=s3` with `REGISTRY_STORAGE_S3_<KEY>`. Uploads are multipart uploads whose state
    (upload id, parts, the last partial part) is kept in a sidecar object under
    `<rootdirectory>/.~uploads/`, so an upload started on one node continues on another; add an
    `AbortIncompleteMultipartUpload` lifecycle rule to the bucket for uploads abandoned mid-way. The
    request that brings an upload's last bytes writes them straight to the blob's content address once
    their digest matched (one PutObject for a blob below `chunksize`): no sidecar for it."""

    bucket: str = Field(description="The bucket.")
    region: str | None = Field(
        default=None,
        description="The bucket's region; `region` or `regionendpoint` is required.",
        json_schema_extra=doc(default="`us-east-1` with a `regionendpoint`"),
    )
    regionendpoint: str | None = Field(
        default=None,
        description="The store's endpoint, e.g. `http://127.0.0.1:8333` for a local store; without a "
        "scheme, `secure` chooses https or http.",
        json_schema_extra=doc("URL", default="AWS's, for the region"),
    )
    accesskey: str | None = Field(
        default=None,
        repr=False,
        description="Access key id; unset (with `secretkey`): boto3's usual credential chain.",
    )
    secretkey: str | None = Field(default=None, repr=False, description="Secret access key. Never logged.")
    rootdirectory: str | None = Field(
        default=None,
        description="A prefix for every key dockyard writes in the bucket.",
        json_schema_extra=doc(default="the bucket's root"),
    )
    secure: bool | None = Field(
        default=None,
        description="https for a `regionendpoint` written without a scheme.",
        json_schema_extra=doc(default="`true`"),
    )
    v4auth: bool | None = Field(
        default=None,
        description="Sign requests with AWS Signature Version 4 (else version 2).",
        json_schema_extra=doc(default="`true`"),
    )
    chunksize: int | None = Field(
        default=None,
        description="Multipart part size in bytes, and each upload's buffer: at least 5 MiB (5242880). "
        "Parts grow by one chunksize every 1000 parts, so 10,000 parts still hold 268 GiB at 5 MiB.",
        json_schema_extra=doc(default="`5242880` (5 MiB)"),
    )
    forcepathstyle: bool | None = Field(
        default=None,
        description="Path-style bucket addressing (`endpoint/bucket/key`), which custom endpoints usually "
        "need.",
        json_schema_extra=doc(default="`true` with a `regionendpoint`, else `false`"),
    )
    skipverify: bool | None = Field(
        default=None,
        description="Do not verify the store's TLS certificate.",
        json_schema_extra=doc(default="`false`"),
    )


class RedirectSettings(Section):
    disable: bool = Field(
        default=False,
        description="With S3, blob GETs answer `307` to a presigned URL so clients fetch bytes from the "
        "store; `true` streams them through dockyard.",
    )


class StorageSettings(Section):
    """The blob store: one driver, `filesystem` (the default), `s3` or `inmemory`. registry:2's other
    drivers (`azure`, `gcs`, `swift`, `oss`) are an error, never a silent fallback to local disk."""

    filesystem: FilesystemStorage | None = None
    inmemory: InMemoryStorage | None = None
    s3: S3Storage | None = None
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    uploads: UploadSettings = UploadSettings()
    cache: CacheSettings = CacheSettings()
    redirect: RedirectSettings = RedirectSettings()

    @model_validator(mode="after")
    def _one_driver(self) -> Self:
        named = [name for name in DRIVER_NAMES if getattr(self, name) is not None]
        if len(named) > 1:
            raise ValueError(f"configure exactly one storage driver, not {' and '.join(named)}")
        return self

    @property
    def driver_name(self) -> DriverName:
        if self.s3 is not None:
            return "s3"
        return "inmemory" if self.inmemory is not None else "filesystem"
