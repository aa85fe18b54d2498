"""HTTP edge: `oci` (/v2), `token` (/token), `management` (/api/v1, FastAPI), middleware (request ids,
metrics, access log), health checks and draining. Each API renders domain errors in one place."""
