"""Signatures that verify: per-project trusted keys, cosign signature verification, cached verdicts."""
