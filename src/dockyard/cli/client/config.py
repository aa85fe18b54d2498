"""The CLI's own file of logins: `~/.config/dockyard/cli.json` (`$XDG_CONFIG_HOME` respected).

It holds, per server URL, the username and a personal access token that `dockyard login` created;
never a password. Written atomically with mode 0600 in a 0700 directory, since the token is a secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockyard.cli.client.errors import CliError

FILE_MODE = 0o600
DIR_MODE = 0o700


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dockyard" / "cli.json"


def normalize_server_url(url: str) -> str:
    """`https://host:port` (no trailing slash, no path); a bare `host:port` means HTTPS, as docker does."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"not a server URL: {url!r} (expected e.g. https://registry.example.com)")
    if parts.path or parts.query or parts.fragment:
        raise CliError(f"give the server's base URL without a path: {parts.scheme}://{parts.netloc}")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class ServerLogin:
    url: str
    username: str
    token: str  # a personal access token, used as the password in HTTP Basic auth
    token_id: int | None = None  # to revoke it on logout
    insecure: bool = False  # skip TLS verification (asked for at login)
    ca_cert: str | None = None  # a CA bundle to trust for this server


@dataclass
class CliConfig:
    current: str | None = None  # the server used when --server is not given
    servers: dict[str, ServerLogin] = field(default_factory=dict)

    def login_for(self, url: str | None) -> ServerLogin:
        """The stored login for `url` (or the current server); CliError when there is none."""
        if url is None:
            if self.current is None or self.current not in self.servers:
                raise CliError("not logged in: run `dockyard login URL` first")
            return self.servers[self.current]
        key = normalize_server_url(url)
        if key not in self.servers:
            raise CliError(f"not logged in to {key}: run `dockyard login {key}` first")
        return self.servers[key]

    def remember(self, login: ServerLogin) -> None:
        self.servers[login.url] = login
        self.current = login.url

    def forget(self, url: str) -> None:
        self.servers.pop(url, None)
        if self.current == url:
            self.current = next(iter(self.servers), None)


def load_config(path: Path) -> CliConfig:
    if not path.exists():
        return CliConfig()
    try:
        raw = json.loads(path.read_text())
        servers = {url: ServerLogin(**entry) for url, entry in raw.get("servers", {}).items()}
        return CliConfig(current=raw.get("current"), servers=servers)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise CliError(f"cannot read {path}: {exc}; fix or delete it and log in again") from None


def save_config(config: CliConfig, path: Path) -> None:
    """Replace the file atomically; the new file is created 0600, so the token is never world-readable."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "current": config.current,
        "servers": {url: asdict(login) for url, login in config.servers.items()},
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
