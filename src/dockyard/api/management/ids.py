"""The one type of the numeric ids in /api/v1 paths (jobs, members, rules, runs, tokens).

Ids are the database's 64-bit integer keys: a number outside 1..2^63-1 names nothing, and passed on it
would fail in the driver (`/jobs/99999999999999999999999` was a 500). Refused here, it is a 400 in the
API's error format before any handler runs.
"""

from typing import Annotated

from fastapi import Path

MAX_ID = 2**63 - 1

ResourceId = Annotated[int, Path(ge=1, le=MAX_ID, description="A numeric id, from 1 to 2^63-1.")]
