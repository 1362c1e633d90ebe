#!/usr/bin/env bash
# kafka-4.sh — a throwaway 3-node Apache Kafka 4.x cluster (KRaft, combined broker+controller) on loopback.
#
#   deploy/testing/kafka-4.sh fetch          download the jars once (Maven, deploy/testing/kafka-4/pom.xml)
#   deploy/testing/kafka-4.sh start [N...]   format (once) and start the nodes (default all), wait until ready
#   deploy/testing/kafka-4.sh stop [N...]    stop the nodes this script started (by their pid files)
#   deploy/testing/kafka-4.sh status         exit 0 if every node answers Metadata listing all nodes
#   deploy/testing/kafka-4.sh wipe           stop, then delete data and logs of this cluster
#   deploy/testing/kafka-4.sh logs           print every node's log (tail)
#   deploy/testing/kafka-4.sh env            print the settings in effect, and the classpath (CLASSPATH=...)
#
# Nodes are numbered 1..KAFKA4_NODES; node N has node.id N, its client listener on
# 127.0.0.1:$((KAFKA4_PORT+N-1)) (advertised as itself) and its controller listener on
# 127.0.0.1:$((KAFKA4_CONTROLLER_PORT+N-1)). Each JVM gets -Xmx$KAFKA4_HEAP and
# -XX:MaxDirectMemorySize=$KAFKA4_DIRECT, as the 0.9 broker in kafka-0.9.sh does.
#
# Secure listeners (on by default for the default ports, else when KAFKA4_SECURE_PORT is set): node N
# also listens with SSL on $((KAFKA4_SECURE_PORT+N-1)), SASL_SSL on $((KAFKA4_SECURE_PORT+100+N-1)) and
# SASL_PLAINTEXT on $((KAFKA4_SECURE_PORT+200+N-1)) (29500.., 29600.., 29700.. by default), each advertised
# as itself; the PLAINTEXT listeners above stay as they are, and brokers talk to each other over them.
# SASL mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; users alice/alice-secret and admin/admin-secret
# for every mechanism. The SSL listener requests (does not require) a client certificate. openssl
# writes a CA, the brokers' certificate (SAN 127.0.0.1, localhost) and a client certificate, all PEM,
# into $KAFKA4_DATA/tls once: ca.crt, broker.pem (key and chain, the brokers' PEM keystore), client.crt,
# client.key. `env` prints the ports and paths.
#
# Settings (environment):
#   KAFKA4_VERSION          org.apache.kafka:kafka_2.13 version          (default 4.4.0)
#   KAFKA4_HOME             jar cache; libs in $KAFKA4_HOME/libs-VERSION (default /tmp/kafkaguard-kafka4)
#   KAFKA4_NODES            number of nodes                              (default 3)
#   KAFKA4_PORT             first client port                            (default 29092)
#   KAFKA4_CONTROLLER_PORT  first controller port                        (default 29192)
#   KAFKA4_DATA             cluster dir: data, logs, pids (default /tmp/kafkaguard-kafka4-data-$KAFKA4_PORT)
#   KAFKA4_HEAP             -Xmx per node                                (default 512m)
#   KAFKA4_DIRECT           -XX:MaxDirectMemorySize per node             (default 100m)
#   KAFKA4_RF               default replication factor (and offsets topic) (default min(3, nodes))
#   KAFKA4_NETWORK_THREADS  num.network.threads                          (default 3)
#   KAFKA4_WAIT             seconds to wait for readiness                (default 120)
#   KAFKA4_SECURE_PORT      first SSL port; SASL_SSL +100, SASL_PLAINTEXT +200
#                           (default 29500 when KAFKA4_PORT is 29092, else no secure listeners)
#   KAFKA4_SECURE           0: no secure listeners even on the default ports (default 1)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KAFKA4_VERSION=${KAFKA4_VERSION:-4.4.0}
KAFKA4_HOME=${KAFKA4_HOME:-/tmp/kafkaguard-kafka4}
KAFKA4_NODES=${KAFKA4_NODES:-3}
KAFKA4_PORT=${KAFKA4_PORT:-29092}
KAFKA4_CONTROLLER_PORT=${KAFKA4_CONTROLLER_PORT:-29192}
KAFKA4_DATA=${KAFKA4_DATA:-/tmp/kafkaguard-kafka4-data-$KAFKA4_PORT}
KAFKA4_HEAP=${KAFKA4_HEAP:-512m}
KAFKA4_DIRECT=${KAFKA4_DIRECT:-100m}
KAFKA4_RF=${KAFKA4_RF:-$((KAFKA4_NODES < 3 ? KAFKA4_NODES : 3))}
KAFKA4_NETWORK_THREADS=${KAFKA4_NETWORK_THREADS:-3}
KAFKA4_WAIT=${KAFKA4_WAIT:-120}
KAFKA4_SECURE=${KAFKA4_SECURE:-1}
if [[ -z "${KAFKA4_SECURE_PORT:-}" && "$KAFKA4_PORT" == 29092 ]]; then
	KAFKA4_SECURE_PORT=29500
fi
[[ "$KAFKA4_SECURE" == 1 ]] || KAFKA4_SECURE_PORT=
KAFKA4_SECURE_PORT=${KAFKA4_SECURE_PORT:-}
TLS="$KAFKA4_DATA/tls"
# The users every SASL mechanism knows (user=password). Test credentials, loopback only.
SASL_USERS=(alice=alice-secret admin=admin-secret)

LIBS="$KAFKA4_HOME/libs-$KAFKA4_VERSION"
PY=$(command -v /usr/bin/python3 || command -v python3)

say() { echo "kafka-4.sh: $*" >&2; }
die() { say "$*"; exit 1; }

port_of() { echo $((KAFKA4_PORT + $1 - 1)); }
cport_of() { echo $((KAFKA4_CONTROLLER_PORT + $1 - 1)); }
ssl_port_of() { echo $((KAFKA4_SECURE_PORT + $1 - 1)); }
sasl_ssl_port_of() { echo $((KAFKA4_SECURE_PORT + 100 + $1 - 1)); }
sasl_port_of() { echo $((KAFKA4_SECURE_PORT + 200 + $1 - 1)); }
secure() { [[ -n "$KAFKA4_SECURE_PORT" ]]; }
pidfile() { echo "$KAFKA4_DATA/node-$1.pid"; }
logfile() { echo "$KAFKA4_DATA/logs/node-$1.log"; }
all_nodes() { seq 1 "$KAFKA4_NODES"; }

fetch() {
	if [[ -f "$LIBS/kafka_2.13-$KAFKA4_VERSION.jar" && -f "$LIBS/kafka-clients-$KAFKA4_VERSION.jar" ]]; then
		return
	fi
	command -v mvn >/dev/null || die "mvn is required to fetch Kafka $KAFKA4_VERSION (apt-get install maven)"
	say "fetching Apache Kafka $KAFKA4_VERSION jars into $LIBS"
	mkdir -p "$KAFKA4_HOME"
	rm -rf "$LIBS.tmp"
	mvn -q -B -f "$here/kafka-4/pom.xml" -Dkafka.version="$KAFKA4_VERSION" \
		dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" >&2
	mv "$LIBS.tmp" "$LIBS"
	[[ -f "$LIBS/kafka_2.13-$KAFKA4_VERSION.jar" ]] || die "Maven did not fetch kafka_2.13-$KAFKA4_VERSION.jar"
}

alive() { # alive PIDFILE
	[[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { # port_open PORT
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# metadata_ok PORT WANT sends a Metadata v4 request (the oldest Kafka 4 accepts) for no
# topics and checks the correlation id and that at least WANT brokers are listed.
metadata_ok() {
	"$PY" - "$1" "$2" <<'EOF'
import socket, struct, sys
port, want = int(sys.argv[1]), int(sys.argv[2])
# Metadata v4: header v1 (key 3, version 4, corr, client id), topics = [] (empty, not null), allow_auto = false
body = struct.pack('>hhih', 3, 4, 4242, 5) + b'probe' + struct.pack('>ib', 0, 0)
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
    corr, throttle, nbrokers = struct.unpack('>iii', resp[:12])
    sys.exit(0 if corr == 4242 and nbrokers >= want else 1)
except Exception:
    sys.exit(1)
EOF
}

# certs writes the test PKI once: a CA, one certificate for every broker (they all listen on
# 127.0.0.1) and a client certificate, PEM; unencrypted PKCS#8 keys, as Kafka's PEM keystore wants.
certs() {
	[[ -f "$TLS/broker.pem" && -f "$TLS/client.key" ]] && return 0
	command -v openssl >/dev/null || die "openssl is required for the secure listeners"
	rm -rf "$TLS.tmp"
	mkdir -p "$TLS.tmp"
	(
		set -e
		cd "$TLS.tmp"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kafkaguard test CA" \
			-keyout ca.key -out ca.crt -addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=critical,keyCertSign,cRLSign
		for who in broker client; do
			ext="subjectAltName=DNS:localhost,IP:127.0.0.1"
			[[ $who == client ]] && ext="subjectAltName=DNS:alice"
			openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$who.key0" -out "$who.csr"
			openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
				-extfile <(echo "$ext") -out "$who.crt"
			openssl pkcs8 -topk8 -nocrypt -in "$who.key0" -out "$who.key"
			rm -f "$who.key0" "$who.csr"
		done
		cat broker.key broker.crt ca.crt >broker.pem
	) >"$KAFKA4_DATA/logs/tls.log" 2>&1 || { cat "$KAFKA4_DATA/logs/tls.log" >&2; die "openssl failed"; }
	rm -rf "$TLS"
	mv "$TLS.tmp" "$TLS"
	say "test certificates in $TLS"
}

# secure_config N prints the secure listeners' settings of node N.
secure_config() {
	local users="" u l
	for u in "${SASL_USERS[@]}"; do users+=" user_${u%%=*}=\"${u#*=}\""; done
	for l in sasl_ssl sasl_plaintext; do
		echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
		echo "listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
		echo "listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
	done
	echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
	echo "ssl.keystore.type=PEM"
	echo "ssl.keystore.location=$TLS/broker.pem"
	echo "ssl.truststore.type=PEM"
	echo "ssl.truststore.location=$TLS/ca.crt"
	echo "listener.name.ssl.ssl.client.auth=requested"
}

voters() {
	local n v=""
	for n in $(all_nodes); do
		v+="${v:+,}$n@127.0.0.1:$(cport_of "$n")"
	done
	echo "$v"
}

write_config() { # write_config N
	local n=$1 conf="$KAFKA4_DATA/conf/node-$1.properties"
	mkdir -p "$KAFKA4_DATA/conf" "$KAFKA4_DATA/logs" "$KAFKA4_DATA/node-$n"
	local listeners="PLAINTEXT://127.0.0.1:$(port_of "$n")" extra=""
	if secure; then
		listeners+=",SSL://127.0.0.1:$(ssl_port_of "$n"),SASL_SSL://127.0.0.1:$(sasl_ssl_port_of "$n")"
		listeners+=",SASL_PLAINTEXT://127.0.0.1:$(sasl_port_of "$n")"
		extra=",SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
	fi
	cat >"$conf" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=$listeners,CONTROLLER://127.0.0.1:$(cport_of "$n")
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$extra
log.dirs=$KAFKA4_DATA/node-$n
num.network.threads=$KAFKA4_NETWORK_THREADS
num.io.threads=4
num.partitions=3
default.replication.factor=$KAFKA4_RF
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=$KAFKA4_RF
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$KAFKA4_RF
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$KAFKA4_RF
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.segment.bytes=16777216
log.retention.check.interval.ms=3600000
EOF
	if secure; then secure_config >>"$conf"; fi
	echo "$conf"
}

format() { # format N: once per node; the cluster id is shared through a file
	local n=$1 conf
	conf=$(write_config "$n")
	[[ -f "$KAFKA4_DATA/node-$n/meta.properties" ]] && return 0
	local id_file="$KAFKA4_DATA/cluster.id"
	if [[ ! -f "$id_file" ]]; then
		java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$id_file"
	fi
	java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$(cat "$id_file")" -c "$conf" \
		>>"$(logfile "$n")" 2>&1 || { tail -n 20 "$(logfile "$n")" >&2; die "formatting node $n failed"; }
}

start_node() { # start_node N: launch, don't wait
	local n=$1 conf pf
	pf=$(pidfile "$n")
	if alive "$pf"; then
		say "node $n already running (pid $(cat "$pf")) on 127.0.0.1:$(port_of "$n")"
		return 0
	fi
	format "$n"
	conf="$KAFKA4_DATA/conf/node-$n.properties"
	port_open "$(port_of "$n")" && die "port $(port_of "$n") is taken by something this script did not start"
	if secure; then
		local p
		for p in "$(ssl_port_of "$n")" "$(sasl_ssl_port_of "$n")" "$(sasl_port_of "$n")"; do
			port_open "$p" && die "port $p is taken by something this script did not start"
		done
	fi
	# setsid: the JVM outlives the caller's process group; only our pids are ever killed.
	setsid java -Xmx"$KAFKA4_HEAP" -Xms"$KAFKA4_HEAP" -XX:MaxDirectMemorySize="$KAFKA4_DIRECT" \
		-XX:+UseG1GC -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.showDateTime=true \
		-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn \
		-cp "$LIBS/*" kafka.Kafka "$conf" >>"$(logfile "$n")" 2>&1 </dev/null &
	echo $! >"$pf"
}

start() {
	command -v java >/dev/null || die "java is required"
	fetch
	local nodes=("$@") n i
	((${#nodes[@]})) || mapfile -t nodes < <(all_nodes)
	mkdir -p "$KAFKA4_DATA/logs"
	if secure; then certs; fi
	for n in "${nodes[@]}"; do
		start_node "$n"
	done
	# Ready: each started node answers Metadata and lists every node that is running.
	local want=0
	for n in $(all_nodes); do alive "$(pidfile "$n")" && want=$((want + 1)); done
	for ((i = 0; i < KAFKA4_WAIT * 2; i++)); do
		local ok=1
		for n in "${nodes[@]}"; do
			alive "$(pidfile "$n")" || { tail -n 50 "$(logfile "$n")" >&2; die "node $n exited; logs in $KAFKA4_DATA/logs"; }
			metadata_ok "$(port_of "$n")" "$want" || { ok=0; break; }
			if secure; then
				port_open "$(ssl_port_of "$n")" && port_open "$(sasl_ssl_port_of "$n")" &&
					port_open "$(sasl_port_of "$n")" || { ok=0; break; }
			fi
		done
		if ((ok)); then
			if secure && [[ ! -f "$KAFKA4_DATA/scram-users.done" ]]; then
				# Once per cluster, through the Admin API. (Credentials made by `StorageTool format
				# --add-scram 'SCRAM-SHA-256=[name=alice,password=alice-secret]'` were refused by
				# 4.4.0's brokers for the right password; the Admin API's are not.)
				java -cp "$LIBS/*" "$here/kafka-4/ScramUsers.java" "127.0.0.1:$(port_of "${nodes[0]}")" \
					"${SASL_USERS[@]}" >>"$KAFKA4_DATA/logs/scram-users.log" 2>&1 ||
					{ tail -n 20 "$KAFKA4_DATA/logs/scram-users.log" >&2; die "creating SCRAM users failed"; }
				touch "$KAFKA4_DATA/scram-users.done"
			fi
			for n in "${nodes[@]}"; do
				say "node $n ready on 127.0.0.1:$(port_of "$n") (pid $(cat "$(pidfile "$n")"), controller :$(cport_of "$n"))"
				if secure; then
					say "node $n secure: ssl :$(ssl_port_of "$n"), sasl_ssl :$(sasl_ssl_port_of "$n"), sasl_plaintext :$(sasl_port_of "$n")"
				fi
			done
			if secure; then
				say "TLS: CA $TLS/ca.crt, client $TLS/client.crt + $TLS/client.key; SASL users alice, admin (PLAIN, SCRAM-SHA-256/512)"
			fi
			say "Kafka $KAFKA4_VERSION, logs in $KAFKA4_DATA/logs"
			return 0
		fi
		sleep 0.5
	done
	for n in "${nodes[@]}"; do tail -n 30 "$(logfile "$n")" >&2; done
	die "cluster not ready after ${KAFKA4_WAIT}s; logs in $KAFKA4_DATA/logs"
}

stop() {
	local nodes=("$@") n pid i pids=() names=()
	((${#nodes[@]})) || mapfile -t nodes < <(all_nodes)
	# SIGTERM every node at once: a KRaft node stopped last, alone, waits for a quorum that is
	# gone, so stopping one by one would make the last one wait out the timeout.
	for n in "${nodes[@]}"; do
		[[ -f "$(pidfile "$n")" ]] || continue
		pid=$(cat "$(pidfile "$n")")
		rm -f "$(pidfile "$n")"
		kill -0 "$pid" 2>/dev/null || { say "node $n (pid $pid) was not running"; continue; }
		kill "$pid" 2>/dev/null || true
		pids+=("$pid")
		names+=("node $n")
	done
	for i in "${!pids[@]}"; do
		local j
		for ((j = 0; j < 120; j++)); do
			kill -0 "${pids[i]}" 2>/dev/null || break
			sleep 0.25
		done
		if kill -0 "${pids[i]}" 2>/dev/null; then
			say "${names[i]} (pid ${pids[i]}) did not stop in 30s; killing it"
			kill -9 "${pids[i]}" 2>/dev/null || true
		fi
		say "stopped ${names[i]} (pid ${pids[i]})"
	done
}

status() {
	local n rc=0
	for n in $(all_nodes); do
		if alive "$(pidfile "$n")" && metadata_ok "$(port_of "$n")" "$KAFKA4_NODES"; then
			say "node $n up on 127.0.0.1:$(port_of "$n") (pid $(cat "$(pidfile "$n")"))"
		else
			say "node $n on 127.0.0.1:$(port_of "$n") not serving"
			rc=1
		fi
	done
	return $rc
}

logs() {
	local f
	for f in "$KAFKA4_DATA"/logs/node-*.log; do
		[[ -f "$f" ]] || continue
		echo "===== $f (last 300 lines) ====="
		tail -n 300 "$f"
	done
}

cmd=${1:-}
shift || true
case "$cmd" in
fetch) fetch ;;
start) start "$@" ;;
stop) stop "$@" ;;
status) status ;;
wipe)
	stop
	[[ "$KAFKA4_DATA" == /tmp/* || "${KAFKA_WIPE_ANYWHERE:-}" == 1 ]] ||
		die "refusing to wipe $KAFKA4_DATA outside /tmp (set KAFKA_WIPE_ANYWHERE=1)"
	rm -rf "$KAFKA4_DATA"
	say "wiped $KAFKA4_DATA"
	;;
logs) logs ;;
env)
	echo "KAFKA4_VERSION=$KAFKA4_VERSION KAFKA4_HOME=$KAFKA4_HOME KAFKA4_NODES=$KAFKA4_NODES KAFKA4_PORT=$KAFKA4_PORT KAFKA4_CONTROLLER_PORT=$KAFKA4_CONTROLLER_PORT KAFKA4_DATA=$KAFKA4_DATA"
	echo "CLASSPATH=$LIBS/*"
	if secure; then
		echo "SSL_PORT=$KAFKA4_SECURE_PORT SASL_SSL_PORT=$((KAFKA4_SECURE_PORT + 100)) SASL_PLAINTEXT_PORT=$((KAFKA4_SECURE_PORT + 200))"
		echo "TLS_DIR=$TLS"
		echo "SASL_USERS=${SASL_USERS[*]}"
	fi
	;;
*)
	echo "usage: $0 fetch|start [N...]|stop [N...]|status|wipe|logs|env" >&2
	exit 2
	;;
esac
