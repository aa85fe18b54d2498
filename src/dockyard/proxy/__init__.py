"""Pull-through cache: projects that proxy one registry endpoint (docs/proxy.md)."""
