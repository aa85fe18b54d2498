"""Scans: vulnerability scan results stored per artifact (docs/security.md, "Scans")."""
