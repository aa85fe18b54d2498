"""Repositories, manifests, tags, referrers and blob links; their read caches and the change feed."""
