"""The audit log: who did what, from where and when; batched writes, queries, retention."""
