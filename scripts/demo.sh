#!/usr/bin/env bash
# make demo: sample pages in, OCR text out, through function containers the watchdog launched.
#
# Builds what it needs (binaries, models, images), starts RabbitMQ, ZooKeeper and FTP on this
# host (make services), runs the init service and the watchdog from their images with
# compose/docker-compose.host.yml (or, without Docker Compose, configures the stages with bin/pero
# and runs bin/pero-watchdog), submits a few generated pages through detect -> recognize -> out,
# waits for the results and prints the text and where the PAGE XML and ALTO files are. Exits
# non-zero if any page failed.
#
# Environment: DEMO_OUT (default out/demo), FUNCTION_IMAGE (pero-worker/function:dev),
# DEMO_TIMEOUT seconds (600), PERO_ZK_ROOT (/pero), and the usual PERO_MQ_*/PERO_FTP_*
# credentials (default: those of make services).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${DEMO_OUT:-$ROOT/out/demo}"
IMAGE="${FUNCTION_IMAGE:-pero-worker/function:dev}"
TIMEOUT="${DEMO_TIMEOUT:-600}"
export PERO_ZOOKEEPER="${PERO_ZOOKEEPER:-127.0.0.1:2181}"
export PERO_ZK_ROOT="${PERO_ZK_ROOT:-/pero}"
export PERO_MQ_USER="${PERO_MQ_USER:-pero}" PERO_MQ_PASSWORD="${PERO_MQ_PASSWORD:-pero-dev-password}"
export PERO_FTP_USER="${PERO_FTP_USER:-pero}" PERO_FTP_PASSWORD="${PERO_FTP_PASSWORD:-pero-dev-password}"
PERO="$ROOT/bin/pero"

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

step "building binaries, models and images"
make -s build models
if [ ${#COMPOSE[@]} -gt 0 ]; then
	make -s images FUNCTION_IMAGE="$IMAGE" >/dev/null 2>&1 || make images FUNCTION_IMAGE="$IMAGE"
else
	images/function/build.sh -t "$IMAGE" >/dev/null
fi
echo "function image: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"

step "starting RabbitMQ, ZooKeeper and FTP on 127.0.0.1 (make services)"
make -s services
mkdir -p "$OUT"

if [ ${#COMPOSE[@]} -gt 0 ]; then
	# The watchdog and the one-shot init run from their images, on the host's network
	# (compose/docker-compose.host.yml); init registers the servers and creates the stages.
	step "starting init and the watchdog with ${COMPOSE[*]} -f compose/docker-compose.host.yml"
	export DOCKER_GID="${DOCKER_GID:-$(stat -c %g /var/run/docker.sock)}" FUNCTION_IMAGE="$IMAGE"
	export PERO_ALLOWED_IMAGES="$IMAGE"
	dc=("${COMPOSE[@]}" -p pero-demo -f compose/docker-compose.host.yml)
	"${dc[@]}" up -d --remove-orphans >"$OUT/compose.log" 2>&1 || { cat "$OUT/compose.log" >&2; die "compose up failed"; }
	trap '"${dc[@]}" logs --no-color watchdog >"$OUT/watchdog.log" 2>&1; "${dc[@]}" down >/dev/null 2>&1 || true' EXIT
	for _ in $(seq 120); do
		state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' pero-demo_init_1 2>/dev/null ||
			docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' pero-demo-init-1 2>/dev/null || echo "missing 0")
		case "$state" in
		"exited 0") break ;;
		exited*) "${dc[@]}" logs --no-color init >&2; die "init failed ($state)" ;;
		esac
		sleep 1
	done
	"${dc[@]}" logs --no-color init 2>&1 | grep -E 'creating|updating' >&2 || true
else
	step "registering the servers and configuring detect -> recognize -> out"
	"$PERO" servers add mq 127.0.0.1:5672 >/dev/null
	"$PERO" servers add mq-monitoring 127.0.0.1:15672 >/dev/null
	"$PERO" servers add ftp 127.0.0.1:2121 >/dev/null
	printf '[output]\nformats = page,alto,txt\n' >"$OUT/recognize.ini"
	stage() { # stage NAME FLAGS...: create, or update when it exists
		local name=$1; shift
		if "$PERO" stage show "$name" >/dev/null 2>&1; then
			"$PERO" stage update "$name" "$@"
		else
			"$PERO" stage create "$name" "$@"
		fi
	}
	common=(--image "$IMAGE" --model-archive models/pp-ocrv4 --max-containers 1 --batch-size 4 --idle-timeout 10s)
	stage detect --function detect "${common[@]}"
	stage recognize --function recognize --config "$OUT/recognize.ini" "${common[@]}"
	stage out --output

	step "starting the watchdog (log: $OUT/watchdog.log)"
	PERO_ALLOWED_IMAGES="$IMAGE" PERO_NETWORK=host PERO_METRICS_ADDR=127.0.0.1:9464 \
		"$ROOT/bin/pero-watchdog" >"$OUT/watchdog.log" 2>&1 &
	WD=$!
	trap 'kill $WD 2>/dev/null; wait $WD 2>/dev/null || true' EXIT
fi
"$PERO" stage list

step "submitting the sample pages"
go run ./scripts/demo/mkpages -out "$OUT/pages" >/dev/null
"$PERO" submit --stages detect recognize out "$OUT/pages" >"$OUT/submitted.tsv"
total=$(wc -l <"$OUT/submitted.tsv")
echo "submitted $total pages (uuids in $OUT/submitted.tsv)"

step "waiting for the results (the watchdog launches containers for the backlog)"
results="$OUT/results"
mkdir -p "$results"
dead() { "$PERO" status 2>/dev/null | awk '$1 == "detect" || $1 == "recognize" {n += $7} END {print n + 0}'; }
dead0=$(dead)
start=$SECONDS
rc=0
while :; do
	"$PERO" download --stage out --dir "$results" --idle 2s >/dev/null 2>"$OUT/download.log" || rc=$?
	done_n=0
	while IFS=$'\t' read -r id _; do
		[ -f "$results/$id/summary.json" ] && done_n=$((done_n + 1))
	done <"$OUT/submitted.tsv"
	printf '\r%d of %d pages done, %ds' "$done_n" "$total" $((SECONDS - start)) >&2
	[ "$done_n" -ge "$total" ] && break
	if [ "$(dead)" -gt "$dead0" ]; then
		echo >&2
		"$PERO" status >&2 || true
		die "pages went to a dead-letter queue; see $OUT/watchdog.log and the queue's x-pero-reason headers"
	fi
	if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
		echo >&2
		"$PERO" status >&2 || true
		die "timed out after ${TIMEOUT}s; see $OUT/watchdog.log"
	fi
	sleep 2
done
echo >&2
"$PERO" status

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
scope_filter="label=pero.scope=$PERO_ZK_ROOT"
for _ in $(seq 120); do
	[ -z "$(docker ps -aq --filter "$scope_filter")" ] && break
	sleep 1
done
left=$(docker ps -aq --filter "$scope_filter" | wc -l)
echo "containers left: $left"
echo
echo "$total pages, $failed failed; results in $results; watchdog log in $OUT/watchdog.log"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ] || exit 1
