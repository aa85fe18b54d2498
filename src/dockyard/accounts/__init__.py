"""Users, robots, groups, LDAP, login limits, sessions and personal access tokens."""
