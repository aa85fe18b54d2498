"""The blob store: content-addressed blobs, crash-safe uploads, and the drivers (filesystem, inmemory, s3)."""
