"""Stored vulnerability scans: results per artifact, the scan jobs (on push, on demand, after an
import), the summaries listings and pull policies read, and the Harbor pluggable scanner API's data and
external scanners (docs/security.md, "Scans", "The Harbor pluggable scanner API")."""
