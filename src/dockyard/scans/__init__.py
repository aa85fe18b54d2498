"""Stored vulnerability scans: results per artifact, the scan jobs (on push, on demand, after an
import), the summaries listings and pull policies read (docs/security.md, "Scans")."""
