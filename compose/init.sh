#!/bin/sh
# Configures a pero-worker deployment: registers the servers in ZooKeeper, packs and uploads the
# model archive and creates the stages detect -> recognize -> out. A stage that exists is
# updated instead, so running it again is safe: the archive packs to the same bytes, and an
# update that changes nothing keeps the stage's config version (one that changes something
# gives it a new version: its running containers finish their batch and exit, and the next ones
# load the new settings).
#
# The compose `init` service runs it from the CLI image, where it is /usr/share/pero/init.sh;
# it needs a writable $TMPDIR (compose mounts a tmpfs on /tmp). Environment, defaults in []:
#   PERO_ZOOKEEPER, PERO_ZK_ROOT, PERO_MQ_VHOST, PERO_MQ_USER, PERO_MQ_PASSWORD, PERO_FTP_USER,
#   PERO_FTP_PASSWORD (or their _FILE forms)      as for every pero command
#   PERO_INIT_MQ [rabbitmq:5672]                   broker address to register
#   PERO_INIT_MQ_MONITORING [rabbitmq:15672]       management API address ("" = none)
#   PERO_INIT_FTP [ftp:21]                         FTP server address
#   PERO_FUNCTION_IMAGE [pero-worker/function:latest]  image of the detect and recognize stages
#   PERO_MODEL_DIR [/usr/share/pero/models/ocr]   directory packed into the model archive
#   PERO_DETECT_MAX_CONTAINERS [1], PERO_RECOGNIZE_MAX_CONTAINERS [2]
#   PERO_BATCH_SIZE [4], PERO_IDLE_TIMEOUT [30s]    settings of both stages
#   PERO_INIT_WAIT [120]                           seconds to wait for the services to answer
# The registered addresses are the ones the runners, the watchdog and the CLI connect to, so
# they must resolve where those run (service names on the compose network, 127.0.0.1 with
# network_mode host).
set -eu

mq=${PERO_INIT_MQ-rabbitmq:5672}
mq_mon=${PERO_INIT_MQ_MONITORING-rabbitmq:15672}
ftp=${PERO_INIT_FTP-ftp:21}
image=${PERO_FUNCTION_IMAGE:-pero-worker/function:latest}
models=${PERO_MODEL_DIR:-/usr/share/pero/models/ocr}
wait_s=${PERO_INIT_WAIT:-120}

log() { echo "init: $*" >&2; }

if [ ! -d "$models" ]; then
	log "model directory $models not found (set PERO_MODEL_DIR, or build the CLI image with the models)"
	exit 2
fi

# Wait for ZooKeeper: `pero servers list` exits 3 while it cannot connect.
start=$(date +%s)
until pero servers list >/dev/null 2>&1; do
	if [ $(($(date +%s) - start)) -ge "$wait_s" ]; then
		log "ZooKeeper at ${PERO_ZOOKEEPER:-127.0.0.1:2181} did not answer within ${wait_s}s:"
		pero servers list >&2 || true
		exit 3
	fi
	sleep 2
done

log "registering the servers (mq $mq, mq-monitoring ${mq_mon:-none}, ftp $ftp)"
pero servers add mq "$mq"
if [ -n "$mq_mon" ]; then
	pero servers add mq-monitoring "$mq_mon"
fi
pero servers add ftp "$ftp"

cfg=$(mktemp -d)
trap 'rm -rf "$cfg"' EXIT
cat >"$cfg/detect.ini" <<'EOF'
; detect: finds the text lines of each page and passes them on as PAGE XML
[output]
formats = page
EOF
cat >"$cfg/recognize.ini" <<'EOF'
; recognize: reads the lines the detect stage found; another recognition model is
; [recognize] model = FILE and dictionary = FILE from the model archive; language_model =
; none reads without the language model
[output]
formats = page,alto,txt
EOF

# stage NAME FLAGS...: creates the stage, or updates it when it exists.
stage() {
	name=$1
	shift
	if pero stage show "$name" >/dev/null 2>&1; then
		log "updating stage $name"
		pero stage update "$name" "$@"
	else
		log "creating stage $name"
		pero stage create "$name" "$@"
	fi
}

common="--image $image --model-archive $models --batch-size ${PERO_BATCH_SIZE:-4} --idle-timeout ${PERO_IDLE_TIMEOUT:-30s}"
# shellcheck disable=SC2086 # $common is a list of flags without spaces inside
stage detect --function detect --config "$cfg/detect.ini" \
	--max-containers "${PERO_DETECT_MAX_CONTAINERS:-1}" $common
# shellcheck disable=SC2086
stage recognize --function recognize --config "$cfg/recognize.ini" \
	--max-containers "${PERO_RECOGNIZE_MAX_CONTAINERS:-2}" $common
stage out --output

pero stage list
log "done: submit with pero submit --stages detect,recognize,out FILES..."
