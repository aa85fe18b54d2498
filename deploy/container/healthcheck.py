"""The image's HEALTHCHECK: GET /readyz on the address `dockyard serve` listens on, 0 when it answers 200.

The address comes from the configuration the server reads (the file DOCKYARD_CONFIG or
REGISTRY_CONFIGURATION_PATH names, then DOCKYARD_*/REGISTRY_* variables), so a config that moves the
port or turns on TLS keeps the check right.
A local probe of this container's own listener: TLS is spoken but the certificate is not checked (it
names the registry's public host, not 127.0.0.1).
"""

from __future__ import annotations

import ssl
import sys
import urllib.request

from dockyard.config.loader import config_path_from_env, load_settings

TIMEOUT_SECONDS = 8.0


def readyz_url() -> tuple[str, ssl.SSLContext | None]:
    http = load_settings(config_path_from_env()).http
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(http.bind_host, http.bind_host)
    if ":" in host:
        host = f"[{host}]"
    if http.tls.certificate is None:
        return f"http://{host}:{http.bind_port}/readyz", None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return f"https://{host}:{http.bind_port}/readyz", context


def main() -> int:
    url, context = readyz_url()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as answer:
            print(answer.read(200).decode(errors="replace"))
            return 0
    except Exception as error:  # urllib raises HTTPError for the 503 of a draining or unready node
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
