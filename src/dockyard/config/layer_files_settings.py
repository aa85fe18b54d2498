"""The `layer_files:` section: bounds on the layer browser ([layer-files.md](layer-files.md))."""

from pydantic import Field

from dockyard.config.base import Section

GIB = 1024**3


class LayerFilesSettings(Section):
    """How much one request of the layer browser (`/api/v1/.../files`, `.../download`, `.../diff`) may
    read. A layer is attacker content: a small gzip blob can inflate to terabytes, so every request stops
    at these bounds with `413 REQUEST_ENTITY_TOO_LARGE` (or, once a listing has started, an `errors`
    line as its last line). See [layer-files.md](layer-files.md)."""

    max_layer_bytes: int = Field(
        default=8 * GIB,
        ge=1,
        description="Decompressed bytes read from one layer by one request (a listing, a download).",
    )
    max_image_bytes: int = Field(
        default=32 * GIB,
        ge=1,
        description="Decompressed bytes read from all the layers of an image by one request (the merged "
        "tree, each side of a diff).",
    )
    max_entries: int = Field(
        default=2_000_000, ge=1, description="Tar entries read from one layer by one request."
    )
    max_seconds: float = Field(
        default=300.0, gt=0, description="Seconds one request may spend reading layers."
    )
