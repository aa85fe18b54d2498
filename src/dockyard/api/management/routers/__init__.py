"""The management API's routers, one module per group of resources.

Importing this package first teaches FastAPI to look for pydantic.v1 models without importing
`pydantic.v1`: FastAPI checks each route's annotations as the route is declared (and each object its
encoder has no rule for), and imported `pydantic.v1` to do so, only to refuse such models. That was
~1.3 MiB and ~85 ms of CPU in each HTTP worker building the API (docs/benchmarks.md, "Memory"), for
models dockyard has none of. An object cannot be an instance of a class from a module no one has
imported, so the checks below answer False until something has imported `pydantic.v1`, and then ask it.
"""

from __future__ import annotations

import sys
from typing import Any


def _v1_base_model() -> type | None:
    v1 = sys.modules.get("pydantic.v1")
    base = getattr(v1, "BaseModel", None)
    return base if isinstance(base, type) else None


def is_pydantic_v1_model_class(cls: Any) -> bool:
    base = _v1_base_model()
    if base is None:
        return False
    try:
        return isinstance(cls, type) and issubclass(cls, base)
    except TypeError:  # a generic alias, say: as FastAPI's lenient_issubclass answers
        return False


def is_pydantic_v1_model_instance(obj: Any) -> bool:
    base = _v1_base_model()
    return base is not None and isinstance(obj, base)


def _check_pydantic_v1_without_importing_it() -> None:
    """FastAPI's own checks import `pydantic.v1` (0.119 on: `fastapi._compat.shared`); where a version
    has them, they are replaced by the ones above, which answer the same."""
    from fastapi import encoders
    from fastapi._compat import shared

    if hasattr(shared, "is_pydantic_v1_model_class"):  # annotation_is_pydantic_v1 calls it
        setattr(shared, "is_pydantic_v1_model_class", is_pydantic_v1_model_class)  # noqa: B010
    if hasattr(encoders, "is_pydantic_v1_model_instance"):  # jsonable_encoder calls it
        setattr(encoders, "is_pydantic_v1_model_instance", is_pydantic_v1_model_instance)  # noqa: B010


_check_pydantic_v1_without_importing_it()
