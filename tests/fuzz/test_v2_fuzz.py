"""Fuzzing /v2 and /token with Hypothesis: no client input gets a 5xx, /v2 refusals are the spec's
error body, and the registry still serves afterwards (the `alive` fixture)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import (
    any_text,
    authorization,
    digests,
    header_bytes,
    manifest_bodies,
    names,
    numbers,
    path_segment,
    references,
    request_headers,
    wire,
)
from tests.fuzz.target import EXAMPLES, Target
from tests.support.inprocess import ADMIN, basic
from tests.support.ociclient import describe, error_codes

ADMIN_HEADER = basic(*ADMIN)  # the admin's, for requests whose other headers are fuzzed
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"])
QUERY = st.dictionaries(
    st.sampled_from(["digest", "mount", "from", "n", "last", "artifactType", "x"]),
    st.one_of(digests, names, numbers, any_text),
    max_size=3,
)


def assert_answered(response: Any) -> None:
    """Not a server error; a /v2 refusal with a body is the spec's error envelope."""
    assert response.status_code < 500, describe(response)
    if (
        response.status_code >= 400
        and response.request.method != "HEAD"
        and response.request.url.path.startswith("/v2")
    ):
        error_codes(response)


def v2_paths(target: Target) -> st.SearchStrategy[str]:
    name = names.map(path_segment)
    reference = references.map(path_segment)
    return st.one_of(
        st.just("/v2/"),
        st.just("/v2/_catalog"),
        st.builds(lambda n: f"/v2/{n}/tags/list", name),
        st.builds(lambda n, r: f"/v2/{n}/manifests/{r}", name, reference),
        st.builds(
            lambda n, d: f"/v2/{n}/blobs/{d}",
            name,
            st.one_of(digests.map(path_segment), st.just(target.layer_digest)),
        ),
        st.builds(lambda n: f"/v2/{n}/blobs/uploads/", name),
        st.builds(lambda n, u: f"/v2/{n}/blobs/uploads/{u}", name, any_text.map(path_segment)),
        st.builds(lambda n, d: f"/v2/{n}/referrers/{d}", name, digests.map(path_segment)),
        any_text.map(lambda text: "/v2/" + path_segment(text)),
    )


@st.composite
def v2_requests(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    return {
        "method": draw(METHODS),
        "url": draw(v2_paths(target)),
        "params": draw(QUERY),
        "headers": draw(request_headers()),
        "content": draw(st.one_of(st.just(b""), st.binary(max_size=300))),
    }


def test_any_v2_request_is_answered_without_a_server_error(alive: Target) -> None:
    @settings(max_examples=EXAMPLES)
    @given(request=v2_requests(alive))
    def check(request: dict[str, Any]) -> None:
        assert_answered(alive.http.request(**request))

    check()


def test_any_manifest_body_is_answered_without_a_server_error(alive: Target) -> None:
    known = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": alive.layer_digest, "size": 1},
        {"mediaType": alive.image.media_type, "digest": alive.image.digest, "size": len(alive.image.body)},
    ]

    @settings(max_examples=EXAMPLES)
    @given(
        body=manifest_bodies(known),
        reference=st.one_of(references, st.just("fuzzed")),
        headers=request_headers(),
    )
    def check(body: bytes, reference: str, headers: dict[str, Any]) -> None:
        headers = {**headers, **ADMIN_HEADER}
        headers.pop("Content-Length", None)  # the body's own: the manifest is what is fuzzed here
        response = alive.http.put(
            f"/v2/fuzz/app/manifests/{path_segment(reference)}", content=body, headers=headers
        )
        assert_answered(response)

    check()


def test_any_upload_request_is_answered_without_a_server_error(alive: Target) -> None:
    """Each example starts an upload, then sends whatever to it: chunks with odd Content-Range and
    Content-Length, status requests, a finishing PUT with any digest, a cancel."""

    @settings(max_examples=EXAMPLES)
    @given(
        steps=st.lists(
            st.tuples(
                st.sampled_from(["PATCH", "PUT", "GET", "DELETE"]),
                request_headers(),
                st.one_of(st.just({}), digests.map(lambda digest: {"digest": digest})),
                st.binary(max_size=100),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def check(steps: list[tuple[str, dict[str, Any], dict[str, str], bytes]]) -> None:
        started = alive.http.post("/v2/fuzz/app/blobs/uploads/", auth=ADMIN)
        assert started.status_code == 202, describe(started)
        location = started.headers["Location"]
        for method, headers, params, body in steps:
            headers = {**headers, **ADMIN_HEADER}
            response = alive.http.request(method, location, headers=headers, params=params, content=body)
            assert_answered(response)

    check()


def test_any_token_request_is_answered_without_a_server_error(alive: Target) -> None:
    scopes = st.one_of(
        st.sampled_from(
            ["repository:fuzz/app:pull,push", "repository:library/app:pull", "registry:catalog:*"]
        ),
        st.builds(lambda kind, name, actions: f"{kind}:{name}:{actions}", any_text, names, any_text),
        any_text,
    )
    params = st.lists(
        st.tuples(
            st.sampled_from(["service", "scope", "account", "offline_token", "client_id", "x"]),
            st.one_of(st.just("dockyard"), scopes, any_text),
        ),
        max_size=5,
    )
    form = st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "grant_type",
                    "service",
                    "scope",
                    "username",
                    "password",
                    "refresh_token",
                    "access_type",
                    "client_id",
                    "offline_token",
                ]
            ),
            st.one_of(
                st.sampled_from(["password", "refresh_token", "dockyard", "offline", "admin"]),
                scopes,
                any_text,
            ),
        ),
        max_size=6,
    )

    @settings(max_examples=EXAMPLES)
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
        query=params,
        body=st.one_of(form.map(lambda pairs: urlencode(pairs).encode()), st.binary(max_size=200)),
        content_type=st.one_of(
            st.just("application/x-www-form-urlencoded"), st.just("application/json"), any_text, header_bytes
        ),
        auth=authorization(),
    )
    def check(
        method: str, query: list[tuple[str, str]], body: bytes, content_type: Any, auth: dict[str, Any]
    ) -> None:
        headers = {**auth, **wire({"Content-Type": content_type})}
        response = alive.http.request(method, "/token", params=query, content=body, headers=headers)
        assert response.status_code < 500, describe(response)

    check()
