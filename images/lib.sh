# shellcheck shell=bash
# Shared by the offline image builds (images/*/build.sh); sourced, not run. Each build fills a
# temporary context directory with a root filesystem (binaries, the shared libraries ldd lists
# for them, the CA bundle) and runs the legacy builder on a Dockerfile that starts FROM scratch,
# so nothing is pulled.
#
# The caller sets ROOT (the repository) and calls new_context first; the functions use CTX.

# new_context: makes $CTX (removed on exit) with rootfs/ and a world-writable, sticky rootfs/tmp.
new_context() {
	CTX="$(mktemp -d)"
	# shellcheck disable=SC2064 # expand now: CTX is fixed
	trap "rm -rf '$CTX'" EXIT
	mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/tmp"
	chmod 1777 "$CTX/rootfs/tmp"
}

# image_version: the version stamped into the binaries (git describe, else "dev").
image_version() {
	git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev
}

# go_build CGO PKG OUT: builds PKG (relative to ROOT) into $CTX/rootfs/OUT with the release flags.
go_build() {
	local cgo=$1 pkg=$2 out=$3
	(cd "$ROOT" && CGO_ENABLED=$cgo go build -trimpath \
		-ldflags "-s -w -X github.com/pero-worker/pero-worker/internal/version.Version=$(image_version)" \
		-o "$CTX/rootfs$out" "$pkg")
}

# copy_libs FILE: copies the shared libraries FILE needs (and the dynamic loader) to the same
# paths in the root filesystem, resolving symbolic links. A static FILE needs none.
copy_libs() {
	local lib
	ldd "$1" >/dev/null 2>&1 || return 0
	# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
	for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		if [ ! -e "$CTX/rootfs$lib" ]; then
			mkdir -p "$CTX/rootfs$(dirname "$lib")"
			cp -L "$lib" "$CTX/rootfs$lib"
		fi
	done
}

# copy_ca_certs: the system CA bundle, for TLS to the services.
copy_ca_certs() {
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$CTX/rootfs/etc/ssl/certs"
		cp -L /etc/ssl/certs/ca-certificates.crt "$CTX/rootfs/etc/ssl/certs/"
	fi
}

# docker_build TAG DOCKERFILE: builds the context with DOCKERFILE and prints TAG. The legacy
# builder keeps file modes (the sticky /tmp); no buildx is needed.
docker_build() {
	cp "$2" "$CTX/Dockerfile"
	DOCKER_BUILDKIT=0 docker build -q -t "$1" "$CTX" >/dev/null
	echo "$1"
}
