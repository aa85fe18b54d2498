"""Repositories, manifests, tags, referrers and blob links, and their hot-path read caches."""
