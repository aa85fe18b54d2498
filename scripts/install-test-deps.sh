#!/usr/bin/env bash
# Install what `make test` and `make bench` need, only when something is missing (fast when all is there).
# Works as root on a fresh Debian 12: Debian packages for the real clients, then .venv with the dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package. Recommends are not needed: podman/buildah run rootful on the vfs driver here,
# so fuse-overlayfs and slirp4netns stay out (uidmap comes with buildah).
declare -A PACKAGE_OF=(
  [skopeo]=skopeo
  [podman]=podman
  [buildah]=buildah
  [umoci]=umoci
  [rpmbuild]=rpm  # a real RPM database for the inventory tests: rpmbuild a package, rpm --justdb installs it
  [containerd]=containerd  # containerd + ctr: the e2e tests start a daemon of their own (tests/support/containerd.py)
  # dockerd + /usr/bin/docker: the e2e tests start a daemon of their own (tests/support/docker.py). Keyed by
  # dockerd, not docker: a bare client elsewhere on PATH (e.g. /usr/local/bin/docker) has no daemon.
  [dockerd]=docker.io
  [docker-registry]=docker-registry
  [wrk]=wrk
  [haproxy]=haproxy
  [ab]=apache2-utils
  [/usr/lib/postgresql/15/bin/initdb]=postgresql
  [pg_dump]=postgresql-client  # pg_restore: dockyard restore of older pg_dump backups (and its test)
  [slapd]=slapd  # OpenLDAP server the LDAP tests start on their own ports (tests/support/slapd.py)
  [ldapsearch]=ldap-utils
  [python3]=python3
  [make]=make
  # Prometheus and promtool: the alert rules' unit tests and a real scrape (tests/integration/test_prometheus.py)
  [prometheus]=prometheus
  [promtool]=prometheus
  [redis-server]=redis-server  # Redis the cache and limiter tests start on their own ports (tests/support/redis.py)
  # The container images (`make image`, tests/images): a Debian base from Debian's packages, and the HA
  # compose example started for real.
  [mmdebstrap]=mmdebstrap
  [docker-compose]=docker-compose
  # Headless Chromium for the portal's browser test (tests/e2e/test_portal.py, through Playwright's Python
  # package): Debian's, never the browsers Playwright would download.
  [chromium]=chromium
  # Holds a worker of serve where a stop signal once got lost (tests/integration/test_serve_stop.py).
  [strace]=strace
)

missing=()
for command in "${!PACKAGE_OF[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$command]}")
done
# Real jars for the inventory tests (tests/support/layers.py): Debian's, not downloaded.
declare -A JAR_PACKAGE=([commons-io]=libcommons-io-java [commons-cli]=libcommons-cli-java)
for jar in "${!JAR_PACKAGE[@]}"; do
  [[ -e /usr/share/java/$jar.jar ]] || missing+=("${JAR_PACKAGE[$jar]}")
done
# `python3 -m venv` needs ensurepip, which Debian ships separately; scripts/build_images.py makes a venv
# with Debian's own python3 (the images' Python) to build their wheels.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
[[ ! -x /usr/bin/python3 ]] || /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if ((${#missing[@]})); then
  echo "install-test-deps: installing ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The venv: created once, dev extras re-installed only when pyproject.toml or the pinned versions
# (constraints-dev.txt) changed since the last install.
[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=.venv/.dev-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || constraints-dev.txt -nt $stamp ]]; then
  echo "install-test-deps: uv pip install -e '.[dev]'"
  # uv (from PyPI, pinned in constraints-dev.txt) installs the same versions as pip would, without
  # byte-compiling them: CI makes a new .venv on every fresh checkout, and pip took 45-68 s of it
  # (30-36 s of CPU), uv 11-13 s (~5 s of CPU). Quiet unless it fails: build warnings would bury the
  # test output.
  if ! { .venv/bin/python -m pip install -q -c constraints-dev.txt uv &&
    .venv/bin/uv pip install --python .venv/bin/python -q -c constraints-dev.txt -e '.[dev]'; } \
    >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    exit 1
  fi
  touch "$stamp" .venv/.runtime-installed
fi

# The OpenID provider the single sign-on tests start (tests/support/oidc.py): oidc-provider from the npm
# registry at the versions package-lock.json pins, into tests/support/oidc/node_modules (git-ignored), with
# the machine's Node.js and npm. Again only when the lock file changed since.
oidc_dir=tests/support/oidc
if [[ ! -f $oidc_dir/node_modules/.package-lock.json || $oidc_dir/package-lock.json -nt $oidc_dir/node_modules/.package-lock.json ]]; then
  echo "install-test-deps: npm ci in $oidc_dir"
  npm ci --prefix "$oidc_dir" --no-audit --no-fund --loglevel=error
fi
