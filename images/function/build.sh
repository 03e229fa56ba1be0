#!/usr/bin/env bash
# Builds the function image offline: compiles pero-runner (cgo: it links ONNX Runtime through
# onnxruntime_go, so the binary is dynamic), copies it, the shared libraries ldd lists for it and
# for ONNX Runtime, and the system CA bundle into a build context, and runs `docker build` on
# images/function/Dockerfile (FROM scratch).
#
# Usage: images/function/build.sh [-t TAG] [--onnxruntime PATH | --without-onnxruntime]
#   -t TAG                 image tag (default pero-worker/function:dev)
#   --onnxruntime PATH     libonnxruntime.so.1 to include (default: $PERO_ORT_LIB, else
#                          ../shared/assets/onnxruntime/linux-x64/libonnxruntime.so.1 when present)
#   --without-onnxruntime  leave ONNX Runtime out (noop and sleep stages only; a smaller image)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TAG="pero-worker/function:dev"
ORT="${PERO_ORT_LIB:-}"
WITH_ORT=1
while [ $# -gt 0 ]; do
	case "$1" in
	-t) TAG="$2"; shift 2 ;;
	--onnxruntime) ORT="$2"; shift 2 ;;
	--without-onnxruntime) WITH_ORT=0; shift ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ "$WITH_ORT" = 1 ] && [ -z "$ORT" ]; then
	cand="$ROOT/../shared/assets/onnxruntime/linux-x64/libonnxruntime.so.1"
	if [ -f "$cand" ]; then ORT="$cand"; fi
fi
if [ "$WITH_ORT" = 1 ] && [ -n "$ORT" ] && [ ! -f "$ORT" ]; then
	echo "build.sh: --onnxruntime $ORT: no such file" >&2
	exit 2
fi

CTX="$(mktemp -d)"
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/tmp" "$CTX/cache"
chmod 1777 "$CTX/rootfs/tmp"
chmod 0755 "$CTX/cache"

VERSION="$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)"
(cd "$ROOT" && CGO_ENABLED=1 go build -trimpath \
	-ldflags "-s -w -X github.com/pero-worker/pero-worker/internal/version.Version=$VERSION" \
	-o "$CTX/rootfs/usr/local/bin/pero-runner" ./runner/cmd/pero-runner)

# copy_libs FILE: copies the shared libraries FILE needs (and the dynamic loader) to the same
# paths in the root filesystem, resolving symbolic links.
copy_libs() {
	local lib
	# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
	for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		if [ ! -e "$CTX/rootfs$lib" ]; then
			mkdir -p "$CTX/rootfs$(dirname "$lib")"
			cp -L "$lib" "$CTX/rootfs$lib"
		fi
	done
}
if ldd "$CTX/rootfs/usr/local/bin/pero-runner" >/dev/null 2>&1; then
	copy_libs "$CTX/rootfs/usr/local/bin/pero-runner"
fi
if [ "$WITH_ORT" = 1 ] && [ -n "$ORT" ]; then
	mkdir -p "$CTX/rootfs/usr/lib/pero"
	cp -L "$ORT" "$CTX/rootfs/usr/lib/pero/libonnxruntime.so.1"
	copy_libs "$ORT"
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	mkdir -p "$CTX/rootfs/etc/ssl/certs"
	cp -L /etc/ssl/certs/ca-certificates.crt "$CTX/rootfs/etc/ssl/certs/"
fi
cp "$ROOT/images/function/Dockerfile" "$CTX/Dockerfile"
# The legacy builder keeps file modes (the sticky /tmp); no buildx is needed.
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$CTX" >/dev/null
echo "$TAG"
