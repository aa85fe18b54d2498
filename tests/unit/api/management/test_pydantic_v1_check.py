"""The management API's routers check for pydantic.v1 models without importing `pydantic.v1`
(`dockyard.api.management.routers`), and FastAPI still refuses such a model where one exists."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.db_independent  # imports in a fresh interpreter: no database

SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import dockyard.api.management.app
    from fastapi import APIRouter
    from fastapi.encoders import jsonable_encoder

    built_without_v1 = "pydantic.v1" not in sys.modules
    warnings.simplefilter("ignore")
    from pydantic import v1

    class Old(v1.BaseModel):
        name: str

    refused = []
    try:
        router = APIRouter()

        @router.post("/old")
        def old(body: Old) -> None: ...
    except Exception as exc:
        refused.append(type(exc).__name__)
    try:
        jsonable_encoder(Old(name="x"))
    except Exception as exc:
        refused.append(type(exc).__name__)
    print(json.dumps({"built_without_v1": built_without_v1, "refused": refused}))
    """
)


def test_the_api_builds_without_pydantic_v1_and_fastapi_still_refuses_its_models() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {
        "built_without_v1": True,
        "refused": ["PydanticV1NotSupportedError", "PydanticV1NotSupportedError"],
    }
