#!/bin/sh
# The image's entrypoint, after registry:2's: anything that is not a program is a dockyard command.
#   docker run IMAGE                      -> dockyard serve
#   docker run IMAGE db upgrade           -> dockyard db upgrade
#   docker run IMAGE /etc/x/config.yml    -> dockyard serve --config /etc/x/config.yml (registry:2's form)
#   docker run -it IMAGE sh               -> a shell
# The config file is found by REGISTRY_CONFIGURATION_PATH (set in the image, so `docker exec` finds it
# too) or DOCKYARD_CONFIG, as outside a container: docs/container.md.
set -eu
[ "$#" -gt 0 ] || set -- serve
case "$1" in
  *.yml | *.yaml) set -- dockyard serve --config "$@" ;;
  -*) set -- dockyard "$@" ;;
  *) command -v "$1" >/dev/null 2>&1 || set -- dockyard "$@" ;;
esac
exec "$@"
