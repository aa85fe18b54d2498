"""One CLI invocation's state: the global options, the stored logins, an API client and the output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.cli.client.config import (
    CliConfig,
    ServerLogin,
    default_config_path,
    load_config,
    normalize_server_url,
    save_config,
)
from dockyard.cli.client.errors import ApiFailure, CliError
from dockyard.cli.client.output import Output

if TYPE_CHECKING:  # httpx is imported when a command first talks to a server, not by `dockyard serve`
    from dockyard.cli.client.http import ApiClient
    from dockyard.cli.client.registry import RegistryClient

# A CI job's robot: its name and secret, used instead of a stored login (robots cannot `dockyard login`).
USERNAME_VARIABLE = "DOCKYARD_USERNAME"
PASSWORD_VARIABLE = "DOCKYARD_PASSWORD"


@dataclass(frozen=True)
class GlobalOptions:
    server: str | None = None
    json: bool = False
    insecure: bool = False
    ca_cert: Path | None = None


class Session:
    def __init__(self, options: GlobalOptions, config_path: Path | None = None) -> None:
        self.options = options
        self.config_path = config_path or default_config_path()
        self.out = Output(options.json)
        self._clients: list[ApiClient] = []
        self._registries: list[RegistryClient] = []

    @cached_property
    def config(self) -> CliConfig:
        return load_config(self.config_path)

    def save(self) -> None:
        save_config(self.config, self.config_path)

    @cached_property
    def login(self) -> ServerLogin:
        """The stored login for --server (or $DOCKYARD_SERVER, or the server last logged in to); or,
        when $DOCKYARD_USERNAME and $DOCKYARD_PASSWORD are set (a CI job with a robot's secret), those
        credentials for that server, with nothing read from or written to the CLI's file."""
        username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
        if username and password:
            if not self.options.server:
                raise CliError(
                    f"{USERNAME_VARIABLE} is set: give the server with --server or DOCKYARD_SERVER"
                )
            return ServerLogin(normalize_server_url(self.options.server), username, password)
        return self.config.login_for(self.options.server)

    @property
    def from_environment(self) -> bool:
        return self.login.token_id is None and bool(os.environ.get(USERNAME_VARIABLE))

    @cached_property
    def registry(self) -> RegistryClient:
        """A client of the server's /v2 API with the same credentials as `api`."""
        from dockyard.cli.client.http import tls_verify
        from dockyard.cli.client.registry import RegistryClient

        login = self.login
        client = RegistryClient(
            login.url,
            (login.username, login.token),
            tls_verify(
                self.options.insecure or login.insecure,
                str(self.options.ca_cert) if self.options.ca_cert else login.ca_cert,
            ),
        )
        self._registries.append(client)
        return client

    @cached_property
    def api(self) -> ApiClient:
        """A client of the logged-in server, authenticated with the stored personal access token."""
        login = self.login
        return self.client(
            login.url,
            (login.username, login.token),
            insecure=self.options.insecure or login.insecure,
            ca_cert=str(self.options.ca_cert) if self.options.ca_cert else login.ca_cert,
        )

    def client(
        self, url: str, auth: tuple[str, str] | None, *, insecure: bool, ca_cert: str | None
    ) -> ApiClient:
        from dockyard.cli.client.http import ApiClient, tls_verify

        client = ApiClient(url, auth, tls_verify(insecure, ca_cert))
        self._clients.append(client)
        return client

    def explain(self, error: CliError) -> str:
        """The one line to show for `error`, with what to do about a refused stored token."""
        if isinstance(error, ApiFailure) and error.status == 401 and "login" in self.__dict__:
            url = self.login.url
            if self.from_environment:
                return f"{url} refused {USERNAME_VARIABLE}={self.login.username} ({error.detail})"
            return (
                f"the server refused the stored token of {self.login.username} ({error.detail}): "
                f"run `dockyard login {url}` again"
            )
        return error.message

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for registry in self._registries:
            registry.close()
