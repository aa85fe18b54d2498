"""The CLI's client side of the management API: HTTP client, stored logins, output formatting.

Nothing here imports the server's packages (an import-linter contract checks it): the CLI talks to a
dockyard over HTTP only, so it works the same against a remote server as against a local one.
"""
