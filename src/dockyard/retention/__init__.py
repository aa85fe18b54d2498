"""Tag retention: per-project rules that choose which tags to keep, evaluated as a job."""
