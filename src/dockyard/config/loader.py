"""Read Settings from a YAML file and DOCKYARD_*/REGISTRY_* environment variables (placeholder)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from dockyard.config.settings import Settings


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    data = yaml.safe_load(path.read_text()) if path else {}
    return Settings.model_validate(data or {})
