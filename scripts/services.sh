#!/usr/bin/env bash
# Installs (when missing) and runs the development services on 127.0.0.1:
#   RabbitMQ 5672 (management 15672), ZooKeeper 2181, pure-ftpd 2121 (passive 30000-30049),
#   and with TLS from a test CA made here: RabbitMQ 5671 (amqps), ZooKeeper 2281, FTP explicit TLS.
# Usage: scripts/services.sh start|stop|status [rabbitmq|zookeeper|ftp]...
#   (no service named: all three)
# State lives in $PERO_SERVICES_DIR (default: .services/ in the repository).
#
# A second set of services (a test suite's private ones) runs beside the first when these name
# other ports, another RabbitMQ node and another state directory; the defaults are in brackets:
#   PERO_SERVICES_MQ_NODE [pero@localhost]  PERO_SERVICES_MQ_PORT [5672]
#   PERO_SERVICES_MQ_TLS_PORT [5671]  PERO_SERVICES_MQ_MGMT_PORT [15672]
#   PERO_SERVICES_MQ_DIST_PORT [25672] (Erlang distribution)
#   PERO_SERVICES_MQ_MAX_MESSAGE_SIZE [RabbitMQ's default, 128 MiB] (bytes)
#   PERO_SERVICES_ZK_PORT [2181]  PERO_SERVICES_ZK_TLS_PORT [2281]
#   PERO_SERVICES_FTP_PORT [2121]  PERO_SERVICES_FTP_PASSIVE [30000:30049]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${PERO_SERVICES_DIR:-$ROOT/.services}"
MQ_USER="${PERO_MQ_USER:-pero}"
MQ_PASSWORD="${PERO_MQ_PASSWORD:-pero-dev-password}"
MQ_VHOST="${PERO_MQ_VHOST:-pero}"
FTP_USER="${PERO_FTP_USER:-pero}"
FTP_PASSWORD="${PERO_FTP_PASSWORD:-pero-dev-password}"
MQ_NODE="${PERO_SERVICES_MQ_NODE:-pero@localhost}"
MQ_PORT="${PERO_SERVICES_MQ_PORT:-5672}"
MQ_TLS_PORT="${PERO_SERVICES_MQ_TLS_PORT:-5671}"
MQ_MGMT_PORT="${PERO_SERVICES_MQ_MGMT_PORT:-15672}"
MQ_DIST_PORT="${PERO_SERVICES_MQ_DIST_PORT:-25672}"
MQ_MAX_MESSAGE_SIZE="${PERO_SERVICES_MQ_MAX_MESSAGE_SIZE:-}"
FTP_PORT="${PERO_SERVICES_FTP_PORT:-2121}"
FTP_PASSIVE="${PERO_SERVICES_FTP_PASSIVE:-30000:30049}"
ZK_PORT="${PERO_SERVICES_ZK_PORT:-2181}"
ZK_TLS_PORT="${PERO_SERVICES_ZK_TLS_PORT:-2281}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

install_missing() {
	local want=() pkg
	for pkg in rabbitmq-server zookeeper netcat-openbsd pure-ftpd openssl curl; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || want+=("$pkg")
	done
	command -v java >/dev/null || want+=(default-jre-headless)
	if [ ${#want[@]} -gt 0 ]; then
		log "installing ${want[*]}"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
	fi
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	local i
	for ((i = 0; i < secs * 5; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "$what did not become ready within ${secs}s (logs in $DIR)"
}

# ---------- TLS material (a test CA and a server certificate for 127.0.0.1/localhost) ----------
make_certs() {
	local d="$DIR/tls"
	[ -f "$d/server.pem" ] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pero test CA" \
		-keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 3650 -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
	cat "$d/server.key" "$d/server.crt" >"$d/server.pem"
	chmod 600 "$d"/*.key "$d/server.pem"
}

# ---------- RabbitMQ ----------
# Debian's wrappers in /usr/sbin switch to the rabbitmq user and its fixed folders; call the real scripts.
MQBIN=/usr/lib/rabbitmq/bin
mq_env() {
	export RABBITMQ_NODENAME="$MQ_NODE"
	export RABBITMQ_DIST_PORT="$MQ_DIST_PORT"
	export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq"
	export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins"
	export RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia"
	export RABBITMQ_LOG_BASE="$DIR/rabbitmq/log"
	export RABBITMQ_PID_FILE="$DIR/rabbitmq/rabbitmq.pid"
	export HOME="$DIR/rabbitmq" # the Erlang cookie lives here
}

mq_running() { mq_env; "$MQBIN/rabbitmqctl" -q status >/dev/null 2>&1; }
# The node's process lives (it may be up without the rabbit application, after a failed start).
mq_pid_alive() { mq_env; [ -f "$RABBITMQ_PID_FILE" ] && kill -0 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null; }

start_rabbitmq() {
	mq_env
	if mq_running; then log "rabbitmq already running"; return 0; fi
	mkdir -p "$DIR/rabbitmq/mnesia" "$DIR/rabbitmq/log"
	cat >"$DIR/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$MQ_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MQ_MGMT_PORT
loopback_users = none
log.file.level = warning
listeners.ssl.default = 127.0.0.1:$MQ_TLS_PORT
ssl_options.cacertfile = $DIR/tls/ca.crt
ssl_options.certfile = $DIR/tls/server.crt
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
	if [ -n "$MQ_MAX_MESSAGE_SIZE" ]; then
		printf 'max_message_size = %s\n' "$MQ_MAX_MESSAGE_SIZE" >>"$DIR/rabbitmq/rabbitmq.conf"
	fi
	"$MQBIN/rabbitmq-plugins" --offline enable rabbitmq_management >/dev/null
	log "starting rabbitmq"
	"$MQBIN/rabbitmq-server" -detached >/dev/null 2>&1
	timeout 90 "$MQBIN/rabbitmqctl" -q wait "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || die "rabbitmq did not start (logs in $DIR/rabbitmq/log)"
	"$MQBIN/rabbitmqctl" -q add_vhost "$MQ_VHOST" 2>/dev/null || true
	if ! "$MQBIN/rabbitmqctl" -q list_users | awk '{print $1}' | grep -qx "$MQ_USER"; then
		"$MQBIN/rabbitmqctl" -q add_user "$MQ_USER" "$MQ_PASSWORD" >/dev/null
	else
		"$MQBIN/rabbitmqctl" -q change_password "$MQ_USER" "$MQ_PASSWORD" >/dev/null
	fi
	"$MQBIN/rabbitmqctl" -q set_user_tags "$MQ_USER" administrator >/dev/null
	"$MQBIN/rabbitmqctl" -q set_permissions -p "$MQ_VHOST" "$MQ_USER" '.*' '.*' '.*' >/dev/null
	"$MQBIN/rabbitmqctl" -q set_permissions -p / "$MQ_USER" '.*' '.*' '.*' >/dev/null
	wait_for 30 "rabbitmq management" curl -sf -u "$MQ_USER:$MQ_PASSWORD" "http://127.0.0.1:$MQ_MGMT_PORT/api/overview"
}

stop_rabbitmq() {
	mq_env
	if mq_pid_alive || mq_running; then log "stopping rabbitmq"; "$MQBIN/rabbitmqctl" -q shutdown >/dev/null 2>&1 || true; fi
}

# ---------- ZooKeeper ----------
zk_ok() { [ "$(echo ruok | nc -q 1 127.0.0.1 $ZK_PORT 2>/dev/null)" = imok ]; }

start_zookeeper() {
	if zk_ok; then log "zookeeper already running"; return 0; fi
	mkdir -p "$DIR/zookeeper/data"
	cat >"$DIR/zookeeper/zoo.cfg" <<CONF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$DIR/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
maxSessionTimeout=60000
minSessionTimeout=1000
secureClientPort=$ZK_TLS_PORT
secureClientPortAddress=127.0.0.1
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$DIR/tls/server.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$DIR/tls/ca.crt
ssl.trustStore.type=PEM
ssl.clientAuth=none
CONF
	log "starting zookeeper"
	local cp="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" j
	# Netty serves the TLS port.
	for j in buffer codec common handler resolver transport transport-native-epoll transport-native-unix-common; do
		cp="$cp:/usr/share/java/netty-$j.jar"
	done
	nohup java -Dzookeeper.log.dir="$DIR/zookeeper" -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties \
		-cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$DIR/zookeeper/zoo.cfg" \
		>"$DIR/zookeeper/zookeeper.out" 2>&1 &
	echo $! >"$DIR/zookeeper/zookeeper.pid"
	wait_for 60 zookeeper zk_ok
}

stop_zookeeper() {
	local pidf="$DIR/zookeeper/zookeeper.pid"
	if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
		log "stopping zookeeper"
		kill "$(cat "$pidf")" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$(cat "$pidf")" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidf"
}

# ---------- FTP (pure-ftpd, virtual users) ----------
ftp_ok() { printf 'QUIT\r\n' | nc -q 1 127.0.0.1 $FTP_PORT 2>/dev/null | grep -q '^220'; }

start_ftp() {
	if ftp_ok; then log "ftp already running"; return 0; fi
	make_certs
	mkdir -p "$DIR/ftp/home"
	id peroftp >/dev/null 2>&1 || $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin peroftp
	local uid gid hash
	uid=$(id -u peroftp); gid=$(id -g peroftp)
	$SUDO chown -R peroftp:peroftp "$DIR/ftp/home"
	# SHA-512 crypt: an argon2 hash from pure-pw makes every login take seconds.
	hash=$(openssl passwd -6 "$FTP_PASSWORD")
	printf '%s:%s:%s:%s::%s/./::::::::::::\n' "$FTP_USER" "$hash" "$uid" "$gid" "$DIR/ftp/home" >"$DIR/ftp/pureftpd.passwd"
	pure-pw mkdb "$DIR/ftp/pureftpd.pdb" -f "$DIR/ftp/pureftpd.passwd" >/dev/null
	log "starting ftp"
	pure-ftpd -S 127.0.0.1,$FTP_PORT -l "puredb:$DIR/ftp/pureftpd.pdb" -E -A -H -p "$FTP_PASSIVE" -Y 1 \
		-2 "$DIR/tls/server.pem" -g "$DIR/ftp/pure-ftpd.pid" -c 50 -C 50 -B >/dev/null 2>&1
	wait_for 20 ftp ftp_ok
}

stop_ftp() {
	local pidf="$DIR/ftp/pure-ftpd.pid" pid
	pid=$(cat "$pidf" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		log "stopping ftp"
		kill "$pid" 2>/dev/null || true
		# It removes its pid file at once but takes a moment to exit.
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidf"
}

status() {
	local rc=0
	if wants rabbitmq; then
		if mq_running; then echo "rabbitmq   up    amqp://127.0.0.1:$MQ_PORT/$MQ_VHOST amqps://127.0.0.1:$MQ_TLS_PORT/$MQ_VHOST http://127.0.0.1:$MQ_MGMT_PORT"; else echo "rabbitmq   down"; rc=1; fi
	fi
	if wants zookeeper; then
		if zk_ok; then echo "zookeeper  up    127.0.0.1:$ZK_PORT (TLS 127.0.0.1:$ZK_TLS_PORT)"; else echo "zookeeper  down"; rc=1; fi
	fi
	if wants ftp; then
		if ftp_ok; then echo "ftp        up    127.0.0.1:$FTP_PORT (passive ${FTP_PASSIVE/:/-}, explicit TLS)"; else echo "ftp        down"; rc=1; fi
	fi
	return $rc
}

# The services the command names after the action; none named means all.
SERVICES=()
wants() { # wants SERVICE: whether the command is about SERVICE
	[ ${#SERVICES[@]} -eq 0 ] && return 0
	local s
	for s in "${SERVICES[@]}"; do [ "$s" = "$1" ] && return 0; done
	return 1
}

ACTION="${1:-}"
[ $# -gt 0 ] && shift
for s in "$@"; do
	case "$s" in
	rabbitmq | zookeeper | ftp) SERVICES+=("$s") ;;
	*) echo "usage: $0 start|stop|status [rabbitmq|zookeeper|ftp]..." >&2; exit 2 ;;
	esac
done
case "$ACTION" in
start)
	mkdir -p "$DIR"
	install_missing
	make_certs
	if wants zookeeper; then start_zookeeper; fi
	if wants ftp; then start_ftp; fi
	if wants rabbitmq; then start_rabbitmq; fi
	status
	;;
stop)
	if wants rabbitmq; then stop_rabbitmq; fi
	if wants zookeeper; then stop_zookeeper; fi
	if wants ftp; then stop_ftp; fi
	;;
status) status ;;
*) echo "usage: $0 start|stop|status [rabbitmq|zookeeper|ftp]..." >&2; exit 2 ;;
esac
