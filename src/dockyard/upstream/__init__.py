"""The client side of a remote registry: what the pull-through cache and replication talk to.

A backend like storage: a Protocol (`interfaces`), an in-memory fake (`fake`), the real client on httpx
(`client`, with the Docker token flow in `tokens` and the SSRF guard in `addresses`), and one
conformance suite (`conformance`) every implementation passes.
"""
