"""The web portal: server-rendered pages under /ui (Jinja2 templates, htmx for partial updates), on
the registry's port. Every read and action is one /api/v1 operation, called in-process with the
signed-in user's own session (`services.InProcessApi`): the API's authorization is the portal's, and
this package imports no domain service. `pages.build_portal` loads Jinja2 and the templates; the
server builds it on the first request under /ui, as it builds the management API.
"""

from __future__ import annotations

MOUNT_PATH = "/ui"
