"""Operator maintenance: backup, restore, verify, moving a running registry onto another database
and storage, and adopting a registry:2 storage tree.

Runs from the CLI against the same database and storage `dockyard serve` uses, while it serves;
never imported by the server itself.
"""
