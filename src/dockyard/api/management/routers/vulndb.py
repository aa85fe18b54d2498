"""The offline vulnerability database (system administrators only): its version and contents.

Imports and the allowlist are `dockyard vulndb` commands (docs/security.md): an import reads files on
the machine it runs on, which no API request should be able to name."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Admin

router = APIRouter(tags=["vulnerabilities"])
Services = Annotated[ManagementServices, Depends(services_of)]


class VulnImportOut(BaseModel):
    id: int
    started_at: datetime
    finished_at: datetime
    source: str
    documents: int
    added: int
    updated: int
    unchanged: int
    affected: int
    advisories_total: int


class VulnDBOut(BaseModel):
    version: int = Field(description="Id of the last import that changed something; 0: nothing imported.")
    advisories: int
    affected: int = Field(description="Affected-package entries.")
    withdrawn: int
    by_ecosystem: dict[str, int] = Field(description="Affected-package entries per (lower-cased) ecosystem.")
    last_import: VulnImportOut | None = Field(description="The newest import, whether it changed anything.")
    last_change: VulnImportOut | None = Field(description="The import that made the current version.")


@router.get("/vulndb", response_model=VulnDBOut)
def vulndb_status(principal: Admin, services: Services) -> VulnDBOut:
    """The vulnerability database's version, its size per ecosystem and its last imports."""
    from dockyard.vulndb.services import VulnDB  # the server loads it when asked, not at start

    return VulnDBOut.model_validate(VulnDB(services.db).status().as_dict())
