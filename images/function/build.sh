#!/usr/bin/env bash
# Builds the function image offline: compiles pero-runner (cgo: it links ONNX Runtime through
# onnxruntime_go, so the binary is dynamic), copies it, the shared libraries ldd lists for it and
# for ONNX Runtime, and the system CA bundle into a build context, and runs `docker build` on
# images/function/Dockerfile (FROM scratch).
#
# Usage: images/function/build.sh [-t TAG] [--onnxruntime PATH | --without-onnxruntime]
#   -t TAG                 image tag (default pero-worker/function:dev)
#   --onnxruntime PATH     libonnxruntime.so.1 to include (default: $PERO_ORT_LIB, else
#                          models/onnxruntime/libonnxruntime.so.1 (make models), else
#                          ../shared/assets/onnxruntime/linux-x64/libonnxruntime.so.1 when present)
#   --without-onnxruntime  leave ONNX Runtime out (noop and sleep stages only; a smaller image)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=images/lib.sh
. "$ROOT/images/lib.sh"
TAG="pero-worker/function:dev"
ORT="${PERO_ORT_LIB:-}"
WITH_ORT=1
while [ $# -gt 0 ]; do
	case "$1" in
	-t) TAG="$2"; shift 2 ;;
	--onnxruntime) ORT="$2"; shift 2 ;;
	--without-onnxruntime) WITH_ORT=0; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ "$WITH_ORT" = 1 ] && [ -z "$ORT" ]; then
	for cand in "$ROOT/models/onnxruntime/libonnxruntime.so.1" \
		"$ROOT/../shared/assets/onnxruntime/linux-x64/libonnxruntime.so.1"; do
		if [ -f "$cand" ]; then ORT="$cand"; break; fi
	done
fi
if [ "$WITH_ORT" = 1 ] && [ -n "$ORT" ] && [ ! -f "$ORT" ]; then
	echo "build.sh: --onnxruntime $ORT: no such file" >&2
	exit 2
fi

new_context
# The model cache directory: a volume mounted there starts with the image's owner (65532).
mkdir -p "$CTX/cache"
chmod 0755 "$CTX/cache"
go_build 1 ./runner/cmd/pero-runner /usr/local/bin/pero-runner
copy_libs "$CTX/rootfs/usr/local/bin/pero-runner"
if [ "$WITH_ORT" = 1 ] && [ -n "$ORT" ]; then
	mkdir -p "$CTX/rootfs/usr/lib/pero"
	cp -L "$ORT" "$CTX/rootfs/usr/lib/pero/libonnxruntime.so.1"
	copy_libs "$ORT"
fi
copy_ca_certs
docker_build "$TAG" "$ROOT/images/function/Dockerfile"
