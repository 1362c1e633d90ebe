"""confluent-kafka or kafka-python 3.x, driven by kafkaguard's e2e suite (e2e/kafka4_clients_test.go).

Usage: python kafka4_python_client.py confluent|kafka-python BOOTSTRAP TOPIC GROUP OVERSIZE < records
where each stdin line is "1|2 base64(key) base64(value)" (batch 1 or 2). Results are stdout lines the
Go test parses: VERSION, BROKER, DIRECT, GROUP1, GROUP2, RB1, RB2, RBASSIGN, OVERSIZED. Every wait is
bounded. RB1/RB2: two members share a topic and commit; one leaves; the other must take over its partitions
at the committed offsets.
"""
import base64
import importlib.metadata
import os
import sys
import threading
import time

flavour, bootstrap, topic, group, oversize = sys.argv[1:6]
oversize = int(oversize)
batches = {"1": [], "2": [], "3": [], "4": []}
for line in sys.stdin:
    f = line.split()
    if len(f) == 3 and f[0] in batches:
        batches[f[0]].append((base64.b64decode(f[1]), base64.b64decode(f[2])))
first, second, third, fourth = batches["1"], batches["2"], batches["3"], batches["4"]
rbtopic, rbgroup = topic + "-rb", group + "-rb"


# KG_CLIENT_SECURITY: a secure listener's settings, "key=value;..." with librdkafka's names
# (security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location,
# ssl.certificate.location, ssl.key.location), as every e2e client program reads them. Unset: plaintext.
security = dict(kv.split("=", 1) for kv in os.environ.get("KG_CLIENT_SECURITY", "").split(";") if "=" in kv)


def kafka_python_security():
    names = {"security.protocol": "security_protocol", "sasl.mechanism": "sasl_mechanism",
             "sasl.username": "sasl_plain_username", "sasl.password": "sasl_plain_password",
             "ssl.ca.location": "ssl_cafile", "ssl.certificate.location": "ssl_certfile",
             "ssl.key.location": "ssl_keyfile"}
    return {names[k]: v for k, v in security.items() if k in names}


def out(tag, *parts):
    print(tag, *parts, flush=True)


def rec(tag, k, v):
    out(tag, base64.b64encode(k or b"").decode(), base64.b64encode(v or b"").decode())


def confluent():
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient

    out("VERSION", "confluent-kafka", importlib.metadata.version("confluent-kafka"), "librdkafka", ck.libversion()[0])
    base = {"bootstrap.servers": bootstrap, "client.id": "kafkaguard-e2e-confluent", **security}

    def produce(recs, extra=None, to=topic):
        errs = []
        p = ck.Producer({**base, "acks": "all", "linger.ms": 5, **(extra or {})})
        for k, v in recs:
            p.produce(to, value=v, key=k, on_delivery=lambda err, msg: err and errs.append(err))
            p.poll(0)
        left = p.flush(60)
        return errs, left

    errs, left = produce(first)
    if errs or left:
        out("ERROR", "produce", errs, left)
        sys.exit(1)
    md = AdminClient(base).list_topics(timeout=30)
    for b in md.brokers.values():
        out("BROKER", f"{b.host}:{b.port}")

    def consume(tag, want, grp, assign):
        c = ck.Consumer({**base, "group.id": grp, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        if assign:
            parts = c.list_topics(topic, timeout=30).topics[topic].partitions
            c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in parts])
        else:
            c.subscribe([topic])
        got, deadline, settle = 0, time.time() + 90, None
        while time.time() < min(deadline, settle or deadline):
            m = c.poll(0.25)
            if m is None or m.error():
                continue
            if m.key() == b"big":
                continue
            rec(tag, m.key(), m.value())
            got += 1
            if got >= want and settle is None:
                settle = time.time() + 2
        if not assign:
            c.commit(asynchronous=False)
        c.close()

    consume("DIRECT", len(first), group + "-direct", True)
    consume("GROUP1", len(first), group, False)
    errs, left = produce(second)
    if errs or left:
        out("ERROR", "produce second", errs, left)
        sys.exit(1)
    consume("GROUP2", len(second), group, False)

    # Rebalance: members a and b poll in turn until both hold partitions and batch 3 is read.
    produce(third, to=rbtopic)
    conf = {**base, "group.id": rbgroup, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    a, b = ck.Consumer(conf), ck.Consumer(conf)
    a.subscribe([rbtopic])
    b.subscribe([rbtopic])
    got, deadline = 0, time.time() + 90
    while time.time() < deadline and (got < len(third) or not a.assignment() or not b.assignment()):
        for c in (a, b):
            m = c.poll(0.2)
            if m is not None and not m.error():
                rec("RB1", m.key(), m.value())
                got += 1
                try:
                    c.commit(message=m, asynchronous=False)
                except ck.KafkaException as e:  # a rebalance in progress: the next commit covers it
                    print("commit:", e, file=sys.stderr)
    before = (len(a.assignment()), len(b.assignment()))
    b.close()
    # Wait until a holds every partition before producing more, so that the
    # rebalance cannot rewind a over records it has not committed.
    deadline = time.time() + 60
    while time.time() < deadline and len(a.assignment()) < 3:
        m = a.poll(0.2)
        if m is not None and not m.error():
            rec("RB1", m.key(), m.value())
    produce(fourth, to=rbtopic)
    got, deadline, settle = 0, time.time() + 90, None
    while time.time() < min(deadline, settle or deadline):
        m = a.poll(0.25)
        if m is None or m.error():
            continue
        rec("RB2", m.key(), m.value())
        got += 1
        if got >= len(fourth) and settle is None:
            settle = time.time() + 2
    out("RBASSIGN", before[0], before[1], len(a.assignment()))
    a.close()

    start = time.time()
    errs, left = produce([(b"big", b"x" * oversize)], {"message.max.bytes": oversize * 4, "retries": 5})
    out("OVERSIZED", (str(errs[0]) if errs else "none: delivered") + f" ({time.time() - start:.2f}s)")


def kafka_python():
    import kafka
    # KG_CLIENT_DEBUG=FILE: kafka-python's group coordinator and consumer at DEBUG into FILE,
    # the evidence for a rebalance that goes wrong.
    if os.environ.get("KG_CLIENT_DEBUG"):
        import logging
        h = logging.FileHandler(os.environ["KG_CLIENT_DEBUG"])
        h.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(message)s"))
        for n in ("kafka.coordinator", "kafka.consumer.group", "kafka.cluster", "kafka.client", "kafka.net.connection"):
            logging.getLogger(n).addHandler(h)
            logging.getLogger(n).setLevel(logging.DEBUG)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    out("VERSION", "kafka-python", kafka.__version__)
    base = {"bootstrap_servers": bootstrap, "client_id": "kafkaguard-e2e-kafka-python", **kafka_python_security()}

    def producer(**extra):
        return KafkaProducer(acks="all", linger_ms=5, **base, **extra)

    p = producer()
    for f in [p.send(topic, key=k, value=v) for k, v in first]:
        f.get(timeout=60)
    # The cluster view: ask for the topic's metadata so every broker is known.
    p.partitions_for(topic)
    for b in p._metadata.brokers():
        out("BROKER", f"{b.host}:{b.port}")
    p.close(timeout=10)

    def consume(tag, want, grp):
        c = KafkaConsumer(group_id=grp, auto_offset_reset="earliest", enable_auto_commit=False, **base)
        if grp is None:
            parts = None
            deadline = time.time() + 30
            while not parts and time.time() < deadline:
                parts = c.partitions_for_topic(topic)
                time.sleep(0.1)
            tps = [TopicPartition(topic, x) for x in sorted(parts)]
            c.assign(tps)
            c.seek_to_beginning(*tps)
        else:
            c.subscribe([topic])
        got, deadline, settle = 0, time.time() + 90, None
        while time.time() < min(deadline, settle or deadline):
            # A group member polls long: a short poll can time out in the
            # middle of its rejoin and lose the assignment (see RB1 below).
            for msgs in c.poll(timeout_ms=250 if grp is None else 3000).values():
                for m in msgs:
                    if m.key == b"big":
                        continue
                    rec(tag, m.key, m.value)
                    got += 1
            if got >= want and settle is None:
                settle = time.time() + 2
        if grp is not None:
            c.commit()
        c.close()

    consume("DIRECT", len(first), None)
    consume("GROUP1", len(first), group)
    p = producer()
    for f in [p.send(topic, key=k, value=v) for k, v in second]:
        f.get(timeout=60)
    p.close(timeout=10)
    consume("GROUP2", len(second), group)

    p = producer()
    for f in [p.send(rbtopic, key=k, value=v) for k, v in third]:
        f.get(timeout=60)
    # Each member polls on its own thread, with a poll timeout far above a
    # JoinGroup+SyncGroup round trip. kafka-python 3.0.12 drops a join whose
    # SyncGroup answer lands after the poll that started it has timed out,
    # when that join was the leader's own rejoin after the first metadata
    # (need_rejoin() is False by then): the member keeps no partitions and
    # never heartbeats again. Two members polled in turn for 200 ms each on
    # one thread hit that now and then (through kafkaguard or not). A member
    # only ever runs on its own thread (KafkaConsumer is not thread-safe)
    # until both threads are joined; the main thread reads what they publish.
    mk = lambda: KafkaConsumer(group_id=rbgroup, auto_offset_reset="earliest", enable_auto_commit=False, **base)
    a, b = mk(), mk()
    lock, stop, sizes, rb1 = threading.Lock(), threading.Event(), {}, []

    def member(name, c):
        c.subscribe([rbtopic])
        while not stop.is_set():
            recs = [m for msgs in c.poll(timeout_ms=3000).values() for m in msgs]
            if c.assignment():
                try:
                    c.commit()
                except KafkaError as e:  # a rebalance in progress: the next commit covers it
                    print("commit:", name, e, file=sys.stderr)
            with lock:
                rb1.extend(recs)
                sizes[name] = len(c.assignment())

    threads = [threading.Thread(target=member, args=(n, c), daemon=True) for n, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    deadline = time.time() + 90
    while time.time() < deadline:
        with lock:
            if len(rb1) >= len(third) and sizes.get("a") and sizes.get("b"):
                break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    if any(t.is_alive() for t in threads):
        out("ERROR", "rebalance member thread still polling 30s after stop")
        sys.exit(1)
    for m in rb1:
        rec("RB1", m.key, m.value)
    before = (len(a.assignment()), len(b.assignment()))
    b.close()
    deadline = time.time() + 60
    while time.time() < deadline and len(a.assignment()) < 3:
        for msgs in a.poll(timeout_ms=200).values():
            for m in msgs:
                rec("RB1", m.key, m.value)
    for f in [p.send(rbtopic, key=k, value=v) for k, v in fourth]:
        f.get(timeout=60)
    p.close(timeout=10)
    got, deadline, settle = 0, time.time() + 90, None
    while time.time() < min(deadline, settle or deadline):
        for msgs in a.poll(timeout_ms=250).values():
            for m in msgs:
                rec("RB2", m.key, m.value)
                got += 1
        if got >= len(fourth) and settle is None:
            settle = time.time() + 2
    out("RBASSIGN", before[0], before[1], len(a.assignment()))
    a.close()

    p = producer(max_request_size=oversize * 4, retries=5)
    start = time.time()
    try:
        p.send(topic, key=b"big", value=b"x" * oversize).get(timeout=60)
        out("OVERSIZED", "none: delivered")
    except KafkaError as e:
        out("OVERSIZED", f"{type(e).__name__}: {e} ({time.time() - start:.2f}s)")
    p.close(timeout=10)


{"confluent": confluent, "kafka-python": kafka_python}[flavour]()
