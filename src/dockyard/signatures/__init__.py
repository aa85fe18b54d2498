"""Signatures that verify: trusted keys, cosign, notation and Sigstore keyless bundles, cached verdicts."""
