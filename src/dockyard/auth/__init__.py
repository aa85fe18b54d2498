"""Credentials, RBAC decisions and tokens: who a request is, what it may do, and the tokens it gets."""
