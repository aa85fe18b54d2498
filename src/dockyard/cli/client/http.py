"""A small synchronous client of the management API (`<server>/api/v1`) over httpx.

Every failure becomes one CliError: the API's `{"errors": [...]}` body as an ApiFailure, and
connection, TLS and timeout problems with a hint at what to do.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import httpx

from dockyard.cli.client.errors import ApiFailure, CliError

API_PREFIX = "/api/v1"
PAGE_SIZE = 100  # the API's largest page
TIMEOUT_SECONDS = 30.0
Params = Mapping[str, str | int | bool | None]


def tls_verify(insecure: bool, ca_cert: str | None) -> bool | ssl.SSLContext:
    if insecure:
        return False
    if ca_cert:
        try:
            return ssl.create_default_context(cafile=ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot use CA certificate {ca_cert}: {exc}") from None
    return True


class ApiClient:
    def __init__(
        self,
        server: str,
        auth: tuple[str, str] | None,
        verify: bool | ssl.SSLContext = True,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.server = server
        self._http = httpx.Client(
            base_url=server + API_PREFIX,
            auth=httpx.BasicAuth(*auth) if auth else None,
            verify=verify,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "dockyard-cli"},
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: Params | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def get_all(self, path: str, params: Params | None = None, limit: int | None = None) -> list[Any]:
        """Every item of a paged list (or the first `limit`), page by page, up to X-Total-Count."""
        items: list[Any] = []
        page = 1
        while limit is None or len(items) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(items))
            response = self._send("GET", path, params={**(params or {}), "page": page, "page_size": size})
            batch = response.json()
            items.extend(batch)
            total = int(response.headers.get("x-total-count", len(items)))
            if len(batch) < size or len(items) >= total:
                break
            page += 1
        return items

    def lines(self, path: str, params: Params | None = None) -> Iterator[dict[str, Any]]:
        """The objects of an NDJSON answer (a file listing), as they arrive. An `errors` line (the
        listing stopped part way) raises it; one without its `end` line raises too: it was cut off."""
        with self._stream(path, params, "application/x-ndjson") as response:
            ended = False
            for line in response.iter_lines():
                if not line:
                    continue
                item = json.loads(line)
                if "errors" in item:
                    first = item["errors"][0]
                    raise ApiFailure(response.status_code, str(first["code"]), str(first["message"]))
                if "end" in item:
                    ended = True
                yield item
            if not ended:
                raise CliError(f"the listing from {self.server} was cut off")

    def download(self, path: str, params: Params | None, out: BinaryIO) -> int:
        """Copy a file's bytes to `out` as they arrive; the number of bytes."""
        written = 0
        with self._stream(path, params, "application/octet-stream") as response:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
            expected = response.headers.get("content-length")
            if expected is not None and int(expected) != written:
                raise CliError(f"the download from {self.server} stopped after {written} of {expected} bytes")
        return written

    @contextlib.contextmanager
    def _stream(self, path: str, params: Params | None, accept: str) -> Iterator[httpx.Response]:
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            with self._http.stream("GET", path, params=query, headers={"Accept": accept}) as response:
                if response.is_error:
                    response.read()
                    raise _failure(response)
                yield response
        except httpx.ConnectError as exc:
            raise CliError(connect_message(self.server, exc)) from None
        except httpx.TimeoutException:
            raise CliError(f"{self.server} did not answer within {self._http.timeout.read}s") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot talk to {self.server}: {exc}") from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "params" in kwargs and kwargs["params"] is not None:
            kwargs["params"] = {k: _query_value(v) for k, v in kwargs["params"].items() if v is not None}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(connect_message(self.server, exc)) from None
        except httpx.TimeoutException:
            raise CliError(f"{self.server} did not answer within {self._http.timeout.read}s") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot talk to {self.server}: {exc}") from None
        if response.is_error:
            raise _failure(response)
        return response


def _query_value(value: str | int | bool) -> str | int:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _failure(response: httpx.Response) -> ApiFailure:
    try:
        errors = response.json()["errors"]
        code = str(errors[0]["code"])
        message = "; ".join(str(error["message"]) for error in errors)
    except (ValueError, KeyError, IndexError, TypeError):
        # Not the API's error format: a proxy, or not a dockyard at all.
        code = response.reason_phrase.upper().replace(" ", "_") or "ERROR"
        message = f"unexpected answer from {response.request.url}"
    return ApiFailure(response.status_code, code, message)


def connect_message(server: str, exc: httpx.ConnectError) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"the TLS certificate of {server} is not trusted ({text}); "
            "pass --ca-cert FILE (or DOCKYARD_CA_CERT) with the CA that signed it "
            "(or --insecure to skip the check)"
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"{server} does not speak TLS here; did you mean http://?"
    return f"cannot connect to {server}: {text or type(exc).__name__}"
