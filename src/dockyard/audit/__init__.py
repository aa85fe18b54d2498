"""The audit log: who did what, from where and when; batched writes, pulls counted per hour, queries,
retention."""
