"""Projects, members and roles, quotas, immutable tags, and robots' project permissions."""
