"""Online garbage collection: mark and sweep against the metadata DB while the registry serves."""
