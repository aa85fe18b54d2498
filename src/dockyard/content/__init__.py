"""Pure OCI types and rules: digests, names and references, media types, manifest parsing. No I/O."""
