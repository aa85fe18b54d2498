"""The timeout every test's HTTP client uses against the servers it starts, unless the test means another.

httpx waits 5 s by default, which a loaded CI machine (2 cores, several test processes and their servers)
overruns on ordinary requests: a login hashing a password with argon2, a worker's first requests, a push
while other tests compete for the CPU. The tests check what the server answers, not how fast: a timeout
is only there so that a hung server fails the test instead of the run. One generous value, here, so that
no test is tuned on its own. A test that asserts an answer comes quickly, or polls until a server is up,
passes its own short timeout.

tests/unit/test_http_timeouts.py checks that no HTTP client in the tests is left on httpx's default.
"""

from __future__ import annotations

import httpx

# Connecting to a local listener takes no CPU of the server's: 10 s is already far more than it needs.
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
