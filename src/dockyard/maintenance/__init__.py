"""Operator maintenance: backup, restore, verify, and adopting a registry:2 storage tree.

Runs offline from the CLI against the same services `dockyard serve` builds; never imported by
the server itself.
"""
