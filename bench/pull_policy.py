"""`python -m bench.pull_policy [--requests N] [--rounds R]`: what a pull policy costs a manifest GET.

1. In process: the gate's check on a cached GET (`PullGate.fast`), for a project without policies
   and for one that requires signatures (the decision cached), in µs per call.
2. Over HTTP: one dockyard (one worker, token auth, SQLite) with two projects: `open` (no policy) and
   `strict` (require_signature, its image signed and verified). Sequential manifest GETs by tag
   (one connection, keep-alive), the two alternated in rounds; the median µs per request of each.
   The machine may be loaded: the medians of several rounds, and their difference, are the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

ADMIN = ("admin", "bench-pull-policy-Passw0rd")


def in_process(calls: int) -> dict[str, float]:
    from dockyard.coordination.caches import MIB, GenerationCache, KeyedGenerationCache
    from dockyard.coordination.feeds import InProcessChangeFeed
    from dockyard.coordination.interfaces import Topic, generation_of, keyed_generation_of
    from dockyard.projects.pull_policies import NO_POLICY, PullPolicies, PullPolicy
    from dockyard.signatures.pull_gate import PullGate

    feed = InProcessChangeFeed()
    policies = GenerationCache[str, PullPolicy](generation_of(feed, Topic.POLICIES), MIB)
    decisions = KeyedGenerationCache[tuple[str, str, PullPolicy], str](
        keyed_generation_of(feed, Topic.VERDICTS), MIB, clock=time.monotonic
    )
    gate = PullGate(None, PullPolicies(None, policies), None, decisions)  # type: ignore[arg-type]
    policies.put("open", NO_POLICY, policies.current_generation())
    policies.put("strict", PullPolicy(require_signature=True), policies.current_generation())
    digest = "sha256:" + "ab" * 32
    key = ("strict/app", digest, PullPolicy(require_signature=True))
    decisions.put(key, "", decisions.current_generation(key))
    results = {}
    for name in ("open/app", "strict/app"):
        samples = []
        for _ in range(5):
            start = time.perf_counter_ns()
            for _ in range(calls):
                assert gate.fast(name, digest) is None
            samples.append((time.perf_counter_ns() - start) / calls / 1000)
        results[name] = statistics.median(samples)
    return results


def over_http(requests: int, rounds: int) -> dict[str, list[float]]:
    from tests.support.cosign import make_key, payload, push_sig_tag, signature_layer
    from tests.support.ociclient import OCIClient, bearer_client
    from tests.support.server import start_server

    work = Path(tempfile.mkdtemp(prefix="bench-pull-policy-"))
    server = start_server(
        work / "server",
        {"auth": {"enabled": True}, "http": {"workers": 1}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    try:
        api = httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=60)
        with bearer_client(server.url, ADMIN, ("open/app", "strict/app")) as http:
            oci = OCIClient(http)
            pushed = {}
            for project in ("open", "strict"):
                assert api.post("/projects", json={"name": project}).status_code == 201
                pushed[project] = oci.push_image(f"{project}/app", "v1", seed=project).digest
            key = make_key("ecdsa", work, "bench")
            answer = api.post(
                "/projects/strict/signing-keys", json={"name": "k", "public_key": key.public_pem}
            )
            assert answer.status_code == 201, answer.text
            assert api.patch("/projects/strict", json={"require_signature": True}).status_code == 200
            digest = pushed["strict"]
            body = payload(digest)
            push_sig_tag(
                oci, "strict/app", digest, [signature_layer(oci, "strict/app", body, key.sign(body, work))]
            )
            deadline = time.monotonic() + 60
            while oci.get_manifest("strict/app", "v1").status_code != 200:
                assert time.monotonic() < deadline, "never verified"
                time.sleep(0.2)
            accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
            results: dict[str, list[float]] = {"open/app": [], "strict/app": []}
            for _ in range(rounds):
                for name in results:
                    url = f"/v2/{name}/manifests/v1"
                    for _ in range(200):  # warm
                        http.get(url, headers=accept)
                    start = time.perf_counter_ns()
                    for _ in range(requests):
                        assert http.get(url, headers=accept).status_code == 200
                    results[name].append((time.perf_counter_ns() - start) / requests / 1000)
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for name, micros in in_process(200_000).items():
        print(f"in process, PullGate.fast, {name}: {micros:.3f} µs per call")
    measured = over_http(args.requests, args.rounds)
    for name, samples in measured.items():
        rounded = ", ".join(f"{s:.0f}" for s in samples)
        print(f"HTTP manifest GET {name}: median {statistics.median(samples):.0f} µs per request ({rounded})")
    paired = [b - a for a, b in zip(measured["open/app"], measured["strict/app"], strict=True)]
    print(f"strict - open, per round: median {statistics.median(paired):+.0f} µs (the rounds' noise decides)")


if __name__ == "__main__":
    main()
