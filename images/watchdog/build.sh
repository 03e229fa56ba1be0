#!/usr/bin/env bash
# Builds the watchdog image offline: compiles the static pero-watchdog, copies it and the system
# CA bundle into a build context and runs `docker build` on images/watchdog/Dockerfile (FROM
# scratch).
#
# Usage: images/watchdog/build.sh [-t TAG]
#   -t TAG   image tag (default pero-worker/watchdog:dev)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=images/lib.sh
. "$ROOT/images/lib.sh"
TAG="pero-worker/watchdog:dev"
while [ $# -gt 0 ]; do
	case "$1" in
	-t) TAG="$2"; shift 2 ;;
	-h | --help) sed -n '2,8p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

new_context
go_build 0 ./watchdog/cmd/pero-watchdog /usr/local/bin/pero-watchdog
copy_libs "$CTX/rootfs/usr/local/bin/pero-watchdog" # none: it is static
copy_ca_certs
docker_build "$TAG" "$ROOT/images/watchdog/Dockerfile"
