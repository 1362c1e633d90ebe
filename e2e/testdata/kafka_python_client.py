"""kafka-python (Debian's python3-kafka) client for kafkaguard's e2e suite.

Run with /usr/bin/python3 (the Debian interpreter that sees python3-kafka).
Reads a JSON job on stdin:

    {"bootstrap": ["127.0.0.1:9092"], "api_version": "0.9" | "auto",
     "topic": "t", "group": "g",
     "first":  [[key_b64, value_b64], ...],    # produced, read back directly and by the group
     "second": [[key_b64, value_b64], ...]}    # produced after the group committed

and writes a JSON report on stdout:

    {"brokers": ["host:port", ...],            # brokers as the client learned them from metadata
     "direct": [[k, v], ...],                  # read back with assigned partitions from the start
     "group_first": [[k, v], ...],             # first group member: everything, then commit
     "group_second": [[k, v], ...],            # second member of the same group: only "second"
     "kafka_python": "2.0.2"}

Every wait is bounded; logs go to stderr.
"""
import base64
import json
import logging
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)


def b64(b):
    return base64.b64encode(b or b"").decode()


def unb64(s):
    return base64.b64decode(s)


def client_args(job):
    args = {"bootstrap_servers": job["bootstrap"], "client_id": "kafkaguard-e2e-python",
            "request_timeout_ms": 30000}
    if job["api_version"] == "0.9":
        args["api_version"] = (0, 9)
    return args


def produce(job, records):
    p = KafkaProducer(acks="all", retries=5, linger_ms=5, **client_args(job))
    futures = [p.send(job["topic"], key=unb64(k), value=unb64(v)) for k, v in records]
    p.flush(timeout=60)
    for f in futures:
        f.get(timeout=60)
    brokers = ["%s:%d" % (b.host, b.port) for b in p._metadata.brokers()]
    p.close(timeout=10)
    return brokers


def poll_until(consumer, n, within, settle):
    """Poll until n records arrived or within seconds passed, then settle seconds more."""
    out = []
    deadline = time.time() + within
    settled = None
    for _ in range(10000):
        now = time.time()
        if now > deadline or (settled is not None and now > settled):
            break
        batch = consumer.poll(timeout_ms=500)
        for recs in batch.values():
            for r in recs:
                out.append([b64(r.key), b64(r.value)])
        if len(out) >= n and settled is None:
            settled = time.time() + settle
    return out


def main():
    job = json.load(sys.stdin)
    topic = job["topic"]
    report = {"kafka_python": kafka.__version__}

    report["brokers"] = produce(job, job["first"])

    c = KafkaConsumer(auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                      **client_args(job))
    parts = None
    for _ in range(60):
        parts = c.partitions_for_topic(topic)
        if parts:
            break
        time.sleep(0.5)
    if not parts:
        raise SystemExit("no partitions for %s" % topic)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    report["direct"] = poll_until(c, len(job["first"]), 60, 0)
    report["brokers"] += ["%s:%d" % (b.host, b.port) for b in c._client.cluster.brokers()]
    c.close()

    group_args = dict(group_id=job["group"], auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=1000, **client_args(job))
    g1 = KafkaConsumer(topic, **group_args)
    report["group_first"] = poll_until(g1, len(job["first"]), 90, 1)
    g1.commit()
    g1.close()

    produce(job, job["second"])
    g2 = KafkaConsumer(topic, **group_args)
    report["group_second"] = poll_until(g2, len(job["second"]), 90, 2)
    g2.commit()
    report["brokers"] += ["%s:%d" % (b.host, b.port) for b in g2._client.cluster.brokers()]
    g2.close()

    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
