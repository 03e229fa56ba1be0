#!/usr/bin/env bash
# Builds the CLI image offline: compiles pero (cgo, so dynamic: it loads ONNX Runtime for
# `pero ocr`), copies it, the shared libraries ldd lists for it, a static busybox (the shell of
# compose/init.sh, with its applets linked into /bin), compose/init.sh and the OCR models
# into a build context and runs `docker build` on images/cli/Dockerfile (FROM scratch).
#
# Usage: images/cli/build.sh [-t TAG] [--models DIR | --without-models]
#   -t TAG            image tag (default pero-worker/cli:dev)
#   --models DIR      model directory to include as /usr/share/pero/models/ocr (default:
#                     models/ocr when present, from make models)
#   --without-models  leave the models out (the init script then needs PERO_MODEL_DIR mounted)
# Needs a static /bin/busybox (Debian: busybox-static; installed when missing and apt-get works).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=images/lib.sh
. "$ROOT/images/lib.sh"
TAG="pero-worker/cli:dev"
MODELS=""
WITH_MODELS=1
while [ $# -gt 0 ]; do
	case "$1" in
	-t) TAG="$2"; shift 2 ;;
	--models) MODELS="$2"; shift 2 ;;
	--without-models) WITH_MODELS=0; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ "$WITH_MODELS" = 1 ] && [ -z "$MODELS" ] && [ -d "$ROOT/models/ocr" ]; then
	MODELS="$ROOT/models/ocr"
fi
if [ "$WITH_MODELS" = 1 ] && [ -n "$MODELS" ] && [ ! -d "$MODELS" ]; then
	echo "build.sh: --models $MODELS: no such directory" >&2
	exit 2
fi
if [ "$WITH_MODELS" = 1 ] && [ -z "$MODELS" ]; then
	echo "build.sh: no models/ocr (make models): the image has no models; mount them for the init script" >&2
fi

static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
if ! static_busybox; then
	sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "build.sh: installing busybox-static for the image's shell" >&2
	$sudo apt-get install -y -qq busybox-static >/dev/null ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq busybox-static >/dev/null; }
	static_busybox || { echo "build.sh: /bin/busybox is not a static binary (install busybox-static)" >&2; exit 1; }
fi

new_context
go_build 1 ./cli/cmd/pero /usr/local/bin/pero
copy_libs "$CTX/rootfs/usr/local/bin/pero"
mkdir -p "$CTX/rootfs/bin"
cp /bin/busybox "$CTX/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ -e "$CTX/rootfs/bin/$applet" ] || ln -s busybox "$CTX/rootfs/bin/$applet"
done
mkdir -p "$CTX/rootfs/usr/share/pero"
install -m 0755 "$ROOT/compose/init.sh" "$CTX/rootfs/usr/share/pero/init.sh"
if [ "$WITH_MODELS" = 1 ] && [ -n "$MODELS" ]; then
	mkdir -p "$CTX/rootfs/usr/share/pero/models/ocr"
	cp -L "$MODELS"/* "$CTX/rootfs/usr/share/pero/models/ocr/"
	chmod -R a+rX "$CTX/rootfs/usr/share/pero/models"
fi
copy_ca_certs
docker_build "$TAG" "$ROOT/images/cli/Dockerfile"
