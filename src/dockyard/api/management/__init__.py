"""The management API (/api/v1): FastAPI, one error format, paging/sorting/filtering on every list."""

from dockyard.api.management.app import MOUNT_PATH, create_management_app
from dockyard.api.management.context import ManagementServices, SystemInfo

__all__ = ["MOUNT_PATH", "ManagementServices", "SystemInfo", "create_management_app"]
