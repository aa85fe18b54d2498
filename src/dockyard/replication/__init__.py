"""Replication: policies that copy images between this registry and a registry endpoint, both ways, as
jobs (docs/replication.md)."""
