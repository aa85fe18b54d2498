"""Notifications: registry events sent to HTTP listeners by the job runner (registry:2's envelope)."""
