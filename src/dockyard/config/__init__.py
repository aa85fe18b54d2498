"""Typed settings: the model (`settings`) and how it is read from YAML and the environment (`loader`)."""
