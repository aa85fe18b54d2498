"""The management API (/api/v1): FastAPI, one error format, paging/sorting/filtering on every list.

`create_management_app` (in `app`) loads FastAPI and every router: the server builds it on the first
request under MOUNT_PATH (`api/lazy.py`), so importing this package costs neither. The services it
runs on (`context`: the accounts, tokens, projects, ...) load with dockyard's own auth only, where
the API exists (app.own_auth); the server reads MOUNT_PATH here whatever its auth mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.api.management.app import create_management_app
    from dockyard.api.management.context import ManagementServices, SystemInfo

MOUNT_PATH = "/api/v1"

__all__ = ["MOUNT_PATH", "ManagementServices", "SystemInfo", "create_management_app"]


def __getattr__(name: str) -> Any:
    if name == "create_management_app":
        from dockyard.api.management.app import create_management_app

        return create_management_app
    if name in ("ManagementServices", "SystemInfo"):
        from dockyard.api.management import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
