"""The offline vulnerability database: OSV advisories imported into the metadata DB, and matching."""
