"""Job kinds of the vulnerability database: none yet.

Imports run where the export files are, with `dockyard vulndb import` (cli/vulndb.py), never as a job
that reads paths on a server node. Rescanning what an import changed (`VulnDB.changed_since`) belongs
with the scans, which come with the scanning package.
"""
