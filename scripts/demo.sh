#!/usr/bin/env bash
# make demo: sample pages in, OCR text out, through function containers the watchdog launched.
#
# It builds what it needs, brings the system up, submits a few generated pages through
# detect -> recognize -> out, waits for the results and prints the recognised text and where the
# PAGE XML and ALTO files are. Exits non-zero if any page failed. How it brings the system up:
#
#   compose  where the public images (RabbitMQ, ZooKeeper, FTP) can be pulled and Docker
#            Compose is installed: the whole stack of compose/docker-compose.yml.
#   host     otherwise: RabbitMQ, ZooKeeper and FTP on this host (make services), the init
#            service and the watchdog from their images with compose/docker-compose.host.yml.
#   binaries without Docker Compose: the same with bin/pero and bin/pero-watchdog.
#
# Environment: DEMO_MODE (auto, compose, host or binaries), DEMO_OUT (out/demo),
# FUNCTION_IMAGE (pero-worker/function:dev), DEMO_TIMEOUT seconds (600), PERO_ZK_ROOT (/pero),
# and the PERO_MQ_*/PERO_FTP_* credentials (default: those of make services).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${DEMO_OUT:-$ROOT/out/demo}"
IMAGE="${FUNCTION_IMAGE:-pero-worker/function:dev}"
TIMEOUT="${DEMO_TIMEOUT:-600}"
MODE="${DEMO_MODE:-auto}"
export PERO_ZOOKEEPER="${PERO_ZOOKEEPER:-127.0.0.1:2181}"
export PERO_ZK_ROOT="${PERO_ZK_ROOT:-/pero}"
export PERO_MQ_USER="${PERO_MQ_USER:-pero}" PERO_MQ_PASSWORD="${PERO_MQ_PASSWORD:-pero-dev-password}"
export PERO_FTP_USER="${PERO_FTP_USER:-pero}" PERO_FTP_PASSWORD="${PERO_FTP_PASSWORD:-pero-dev-password}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "Docker is needed: the watchdog runs the stages in containers"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is it running, may this user use it?)"
COMPOSE=()
if docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
	COMPOSE=(docker-compose)
fi
if [ "$MODE" = auto ]; then
	MODE=binaries
	if [ ${#COMPOSE[@]} -gt 0 ]; then
		MODE=host
		step "checking whether the public images can be pulled"
		if timeout 120 docker pull -q rabbitmq:3.13-management >/dev/null 2>&1; then
			MODE=compose
		else
			echo "no: RabbitMQ, ZooKeeper and FTP will run on this host (make services)" >&2
		fi
	fi
fi
case "$MODE" in
compose | host) [ ${#COMPOSE[@]} -gt 0 ] || die "DEMO_MODE=$MODE needs Docker Compose" ;;
binaries) ;;
*) die "DEMO_MODE=$MODE: use auto, compose, host or binaries" ;;
esac
mkdir -p "$OUT"

# pero runs the CLI: on the compose network in compose mode (files under $DATA, which is /data
# there), else bin/pero on this host.
if [ "$MODE" = compose ]; then
	DATA="$OUT/data"
	dc=("${COMPOSE[@]}" -p pero-demo -f compose/docker-compose.yml)
	pero() { PERO_DATA_DIR="$DATA" PERO_UID="$(id -u)" PERO_GID="$(id -g)" "${dc[@]}" run --rm -T pero "$@" 2> >(grep -v -e '^Creating' -e '^Starting' >&2); }
else
	DATA="$OUT"
	pero() { (cd "$DATA" && "$ROOT/bin/pero" "$@"); }
fi

step "building binaries, models and images ($MODE mode)"
make -s build models
case "$MODE" in
compose) ;; # compose builds its images from images/Dockerfile.release
host) make -s images FUNCTION_IMAGE="$IMAGE" >/dev/null 2>&1 || make images FUNCTION_IMAGE="$IMAGE" ;;
binaries) images/function/build.sh -t "$IMAGE" >/dev/null ;;
esac

wait_init() { # wait_init COMPOSE-COMMAND...: until the init service exited 0
	local id state
	for _ in $(seq 300); do
		id=$("$@" ps -q init 2>/dev/null || true)
		state=$([ -n "$id" ] && docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id" 2>/dev/null || echo "starting")
		case "$state" in
		"exited 0") "$@" logs --no-color init 2>&1 | grep -E 'creating|updating' >&2 || true; return 0 ;;
		exited*) "$@" logs --no-color init >&2; die "init failed ($state)" ;;
		esac
		sleep 1
	done
	die "init did not finish within 300s"
}

case "$MODE" in
compose)
	step "starting the stack: ${dc[*]} up"
	[ -f compose/pero.env ] || { cp compose/pero.env.example compose/pero.env; echo "created compose/pero.env from the example: change its passwords for real use" >&2; }
	export DOCKER_GID="${DOCKER_GID:-$(stat -c %g /var/run/docker.sock)}" PERO_DATA_DIR="$DATA" FUNCTION_IMAGE="pero-worker/function:latest"
	mkdir -p "$DATA"
	"${dc[@]}" up -d --build >"$OUT/compose.log" 2>&1 || { tail -30 "$OUT/compose.log" >&2; die "compose up failed (log: $OUT/compose.log)"; }
	trap '"${dc[@]}" logs --no-color watchdog >"$OUT/watchdog.log" 2>&1; "${dc[@]}" stop >/dev/null 2>&1 || true' EXIT
	wait_init "${dc[@]}"
	;;
host)
	step "starting RabbitMQ, ZooKeeper and FTP on 127.0.0.1 (make services)"
	make -s services
	step "starting init and the watchdog: ${COMPOSE[*]} -f compose/docker-compose.host.yml up"
	export DOCKER_GID="${DOCKER_GID:-$(stat -c %g /var/run/docker.sock)}" FUNCTION_IMAGE="$IMAGE" PERO_ALLOWED_IMAGES="$IMAGE"
	dc=("${COMPOSE[@]}" -p pero-demo -f compose/docker-compose.host.yml)
	"${dc[@]}" up -d --remove-orphans >"$OUT/compose.log" 2>&1 || { cat "$OUT/compose.log" >&2; die "compose up failed"; }
	trap '"${dc[@]}" logs --no-color watchdog >"$OUT/watchdog.log" 2>&1; "${dc[@]}" down >/dev/null 2>&1 || true' EXIT
	wait_init "${dc[@]}"
	;;
binaries)
	step "starting RabbitMQ, ZooKeeper and FTP on 127.0.0.1 (make services)"
	make -s services
	step "registering the servers and configuring detect -> recognize -> out"
	pero servers add mq 127.0.0.1:5672 >/dev/null
	pero servers add mq-monitoring 127.0.0.1:15672 >/dev/null
	pero servers add ftp 127.0.0.1:2121 >/dev/null
	printf '[output]\nformats = page,alto,txt\n' >"$OUT/recognize.ini"
	stage() { # stage NAME FLAGS...: create, or update when it exists
		local name=$1
		shift
		if pero stage show "$name" >/dev/null 2>&1; then pero stage update "$name" "$@"; else pero stage create "$name" "$@"; fi
	}
	common=(--image "$IMAGE" --model-archive "$ROOT/models/ocr" --max-containers 1 --batch-size 4 --idle-timeout 10s)
	stage detect --function detect "${common[@]}"
	stage recognize --function recognize --config "$OUT/recognize.ini" "${common[@]}"
	stage out --output
	step "starting the watchdog (log: $OUT/watchdog.log)"
	PERO_ALLOWED_IMAGES="$IMAGE" PERO_NETWORK=host PERO_METRICS_ADDR=127.0.0.1:9464 \
		"$ROOT/bin/pero-watchdog" >"$OUT/watchdog.log" 2>&1 &
	WD=$!
	trap 'kill $WD 2>/dev/null; wait $WD 2>/dev/null || true' EXIT
	;;
esac
pero stage list

step "submitting the sample pages"
rm -rf "$DATA/pages"
go run ./scripts/demo/mkpages -out "$DATA/pages" >/dev/null
pero submit --stages detect recognize out pages >"$OUT/submitted.tsv"
total=$(wc -l <"$OUT/submitted.tsv")
echo "submitted $total pages (uuids in $OUT/submitted.tsv)"

step "waiting for the results (the watchdog launches containers for the backlog)"
results="$DATA/results"
mkdir -p "$results"
dead() { pero status 2>/dev/null | awk '$1 == "detect" || $1 == "recognize" {n += $7} END {print n + 0}'; }
dead0=$(dead)
start=$SECONDS
rc=0
while :; do
	pero download --stage out --dir results --idle 2s >/dev/null 2>"$OUT/download.log" || rc=$?
	done_n=0
	while IFS=$'\t' read -r id _; do
		[ -f "$results/$id/summary.json" ] && done_n=$((done_n + 1))
	done <"$OUT/submitted.tsv"
	printf '\r%d of %d pages done, %ds' "$done_n" "$total" $((SECONDS - start)) >&2
	[ "$done_n" -ge "$total" ] && break
	if [ "$(dead)" -gt "$dead0" ]; then
		echo >&2
		pero status >&2 || true
		die "pages went to a dead-letter queue; see the watchdog log and the queue's x-pero-reason headers"
	fi
	if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
		echo >&2
		pero status >&2 || true
		die "timed out after ${TIMEOUT}s; see the watchdog log"
	fi
	sleep 2
done
echo >&2
pero status

step "recognised text"
failed=0
while IFS=$'\t' read -r id file; do
	stem=$(basename "${file%.*}")
	dir="$results/$id"
	if grep -q '"status": "FAILED"' "$dir/summary.json"; then
		failed=$((failed + 1))
		echo "--- $stem: FAILED ($(grep -m1 '"error"' "$dir/summary.json" | sed 's/^ *//'))"
		continue
	fi
	echo "--- $stem"
	cat "$dir/$stem.txt"
	echo "    PAGE XML: $dir/${stem}_page.xml"
	echo "    ALTO:     $dir/$stem.alto.xml"
done <"$OUT/submitted.tsv"

step "waiting for the function containers to exit on their idle timeout and be reaped"
for _ in $(seq 120); do
	[ -z "$(docker ps -aq --filter "label=pero.scope=$PERO_ZK_ROOT")" ] && break
	sleep 1
done
echo "containers left: $(docker ps -aq --filter "label=pero.scope=$PERO_ZK_ROOT" | wc -l)"
echo
echo "$total pages, $failed failed; results in $results; watchdog log in $OUT/watchdog.log"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ] || exit 1
