"""Permission checks shared by the routers, answered so that private things stay invisible:
an anonymous caller is asked to log in (401), a signed-in caller who may not even read the project
gets the same 404 as for a project that does not exist, and one who may read but not change gets 403.
"""

from __future__ import annotations

from dockyard.api.management.context import ManagementServices
from dockyard.api.management.errors import ApiError
from dockyard.auth.interfaces import Principal, Unauthenticated
from dockyard.projects.interfaces import ProjectNotFound
from dockyard.projects.rbac import Permission


def require(
    services: ManagementServices,
    principal: Principal,
    project: str,
    permission: Permission,
    hidden: Exception | None = None,
) -> frozenset[Permission]:
    """Pass (the principal's permissions in `project`), or raise 401 / 404 (`hidden`, default: project
    not found) / 403, as above."""
    permissions = services.policy.permissions(principal, project)
    if permission in permissions:
        return permissions
    if Permission.PROJECT_READ not in permissions:
        if principal.is_anonymous:
            raise Unauthenticated()
        raise hidden if hidden is not None else ProjectNotFound(detail={"project": project})
    if principal.is_anonymous:
        raise Unauthenticated()
    raise ApiError(403, f"{principal.name} may not {permission.value} in project {project!r}")


def visible(services: ManagementServices, principal: Principal) -> frozenset[str] | None:
    """The projects whose contents the principal may list; None for all of them."""
    visibility = services.policy.visible_projects(principal)
    return None if visibility.all else visibility.projects
