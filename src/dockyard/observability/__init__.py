"""Logs (`logging`: structlog, request ids, masked secrets) and Prometheus metrics (`metrics`)."""
