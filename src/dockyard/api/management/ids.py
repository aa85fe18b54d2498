"""The types of the numeric ids in /api/v1 paths: each router takes its ids as one of these.

An id is a database key. A number outside its column's range names nothing, and passed on it fails in
the driver (`/jobs/99999999999999999999999`, and on PostgreSQL `/projects/p/members/2147483648`, were
500s). Refused here, it is a 400 in the API's error format before any handler runs. The bound follows
the column: INTEGER (PostgreSQL's 32-bit int4) for most tables, BIGINT for those that grow without
end (jobs, retention runs).
"""

from typing import Annotated

from fastapi import Path

MAX_ID = 2**31 - 1
MAX_LONG_ID = 2**63 - 1

# Members, immutable rules, personal access tokens: INTEGER keys.
ResourceId = Annotated[int, Path(ge=1, le=MAX_ID, description=f"A numeric id, from 1 to {MAX_ID}.")]
# Jobs, retention runs: BIGINT keys.
LongResourceId = Annotated[
    int, Path(ge=1, le=MAX_LONG_ID, description=f"A numeric id, from 1 to {MAX_LONG_ID}.")
]
