"""Coordination between processes and nodes: the change feed and its topics, the per-process caches
it invalidates, named locks, the Redis client. An in-process and a Redis implementation of each."""
