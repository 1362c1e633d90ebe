import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.Scanner;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Apache Kafka Java client, driven by kafkaguard's e2e suite (e2e/kafka4_clients_test.go).
 *
 * Usage: java -cp 'libs/*:DIR' Kafka4Client BOOTSTRAP TOPIC GROUP OVERSIZE_BYTES < records
 * where each stdin line is "1|2 base64(key) base64(value)" (batch 1 or 2). Every result is
 * one stdout line the Go test parses: VERSION, BROKER, DIRECT, GROUP1, GROUP2, OVERSIZED,
 * SPLIT. Every wait is bounded; a failure prints ERROR and exits 1. KG_CLIENT_SECURITY in the
 * environment selects a secure listener's settings (see security()).
 */
public class Kafka4Client {
    static final Base64.Encoder B64 = Base64.getEncoder();
    static final Base64.Decoder D64 = Base64.getDecoder();

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int oversize = Integer.parseInt(args[3]);
        List<byte[][]> first = new ArrayList<>(), second = new ArrayList<>(), third = new ArrayList<>(), fourth = new ArrayList<>();
        try (Scanner in = new Scanner(System.in)) {
            while (in.hasNextLine()) {
                String[] f = in.nextLine().trim().split(" ");
                if (f.length != 3) continue;
                byte[][] kv = {D64.decode(f[1]), D64.decode(f[2])};
                switch (f[0]) {
                    case "1": first.add(kv); break;
                    case "2": second.add(kv); break;
                    case "3": third.add(kv); break;
                    default: fourth.add(kv);
                }
            }
        }
        // The client jar's own version file (AppInfoParser moved packages in 4.x).
        Properties ver = new Properties();
        try (java.io.InputStream vin = KafkaProducer.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            if (vin != null) ver.load(vin);
        }
        System.out.println("VERSION " + ver.getProperty("version", "unknown"));

        try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, 1 << 20, 5)) {
            produce(p, topic, first);
        }
        try (Admin admin = Admin.create(props(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
            for (Node n : nodes) System.out.println("BROKER " + n.host() + ":" + n.port());
        }
        // Direct: assign every partition, read from the start, no group.
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, null)) {
            List<TopicPartition> tps = new ArrayList<>();
            c.partitionsFor(topic, Duration.ofSeconds(30)).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            c.assign(tps);
            c.seekToBeginning(tps);
            poll(c, "DIRECT", first.size(), false);
        }
        // Group: member 1 joins, reads batch 1, commits, leaves; member 2 joins after
        // batch 2 and must see only batch 2.
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, group)) {
            c.subscribe(Collections.singletonList(topic));
            poll(c, "GROUP1", first.size(), true);
        }
        try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, 1 << 20, 5)) {
            produce(p, topic, second);
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, group)) {
            c.subscribe(Collections.singletonList(topic));
            poll(c, "GROUP2", second.size(), true);
        }

        rebalance(bootstrap, topic + "-rb", group + "-rb", third, fourth);

        // Oversized: a single record over kafkaguard's Produce limit (the client's own
        // max.request.size is raised, so only kafkaguard can refuse it).
        try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, oversize * 4, 1)) {
            byte[] big = new byte[oversize];
            try {
                p.send(new ProducerRecord<>(topic, "big".getBytes(), big)).get(60, TimeUnit.SECONDS);
                System.out.println("OVERSIZED none: delivered");
            } catch (ExecutionException e) {
                System.out.println("OVERSIZED " + e.getCause().getClass().getName() + ": " + e.getCause().getMessage());
            }
            // A batch of several records that together exceed the limit, each under it:
            // the producer must split it when answered MESSAGE_TOO_LARGE and deliver all.
            int n = 4, each = oversize / 3;
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, 0, ("split-" + i).getBytes(), new byte[each])));
            }
            int ok = 0;
            StringBuilder errs = new StringBuilder();
            for (Future<RecordMetadata> f : fs) {
                try {
                    f.get(60, TimeUnit.SECONDS);
                    ok++;
                } catch (ExecutionException e) {
                    errs.append(' ').append(e.getCause().getClass().getSimpleName());
                }
            }
            System.out.println("SPLIT " + ok + "/" + n + " delivered" + errs);
        }
        System.out.flush();
    }

    /**
     * Two members share a topic and commit what they read (RB1); then member B leaves,
     * and member A must take over B's partitions at B's committed offsets (RB2).
     * RBASSIGN prints A's and B's partition counts before, and A's after.
     */
    static void rebalance(String bootstrap, String topic, String group, List<byte[][]> third, List<byte[][]> fourth) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, 1 << 20, 5)) {
            produce(p, topic, third);
        }
        KafkaConsumer<byte[], byte[]> a = consumer(bootstrap, group), b = consumer(bootstrap, group);
        a.subscribe(Collections.singletonList(topic));
        b.subscribe(Collections.singletonList(topic));
        int got = 0;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (System.nanoTime() < deadline && (got < third.size() || a.assignment().isEmpty() || b.assignment().isEmpty())) {
            for (KafkaConsumer<byte[], byte[]> c : List.of(a, b)) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    System.out.println("RB1 " + B64.encodeToString(r.key()) + " " + B64.encodeToString(r.value()));
                    got++;
                }
                try {
                    c.commitSync(Duration.ofSeconds(30));
                } catch (org.apache.kafka.common.KafkaException e) {
                    // A rebalance in progress: the next commit covers these offsets.
                    System.err.println("commit: " + e);
                }
            }
        }
        int aBefore = a.assignment().size(), bBefore = b.assignment().size();
        b.close();
        // Wait until A holds every partition before producing more, so that
        // the rebalance cannot rewind A over records it has not committed.
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < until && a.assignment().size() < 3) {
            a.poll(Duration.ofMillis(200)).forEach(r -> System.out.println("RB1 " + B64.encodeToString(r.key()) + " " + B64.encodeToString(r.value())));
        }
        try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, 1 << 20, 5)) {
            produce(p, topic, fourth);
        }
        poll(a, "RB2", fourth.size(), true);
        System.out.println("RBASSIGN " + aBefore + " " + bBefore + " " + a.assignment().size());
        a.close();
    }

    static Properties props(String k, String v) {
        Properties p = security();
        p.put(k, v);
        return p;
    }

    /**
     * The client settings for a secure listener, from KG_CLIENT_SECURITY: "key=value;..." with
     * librdkafka's names, which every e2e client program reads alike: security.protocol,
     * sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ssl.certificate.location,
     * ssl.key.location (PEM files). Unset: plaintext, as before.
     */
    static Properties security() {
        Properties p = new Properties();
        String spec = System.getenv("KG_CLIENT_SECURITY");
        if (spec == null || spec.isBlank()) return p;
        java.util.Map<String, String> s = new java.util.HashMap<>();
        for (String kv : spec.split(";")) {
            String[] f = kv.split("=", 2);
            if (f.length == 2) s.put(f[0].trim(), f[1]);
        }
        p.put("security.protocol", s.getOrDefault("security.protocol", "PLAINTEXT"));
        String mech = s.get("sasl.mechanism");
        if (mech != null) {
            String module = mech.startsWith("SCRAM") ? "org.apache.kafka.common.security.scram.ScramLoginModule"
                    : "org.apache.kafka.common.security.plain.PlainLoginModule";
            p.put("sasl.mechanism", mech);
            p.put("sasl.jaas.config", module + " required username=\"" + s.get("sasl.username")
                    + "\" password=\"" + s.get("sasl.password") + "\";");
        }
        if (s.containsKey("ssl.ca.location")) {
            p.put("ssl.truststore.type", "PEM");
            p.put("ssl.truststore.location", s.get("ssl.ca.location"));
        }
        if (s.containsKey("ssl.certificate.location")) {
            try {
                p.put("ssl.keystore.type", "PEM");
                p.put("ssl.keystore.certificate.chain", java.nio.file.Files.readString(java.nio.file.Path.of(s.get("ssl.certificate.location"))));
                p.put("ssl.keystore.key", java.nio.file.Files.readString(java.nio.file.Path.of(s.get("ssl.key.location"))));
            } catch (java.io.IOException e) {
                throw new RuntimeException("KG_CLIENT_SECURITY: " + e.getMessage(), e);
            }
        }
        return p;
    }

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, int maxRequest, int lingerMs) {
        Properties p = props(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "kafkaguard-e2e-java");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(maxRequest));
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(Math.max(maxRequest, 16384)));
        p.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(lingerMs * 20));
        // The oversized producer (maxRequest over the limit) gives up after 15 s: a client
        // that re-sends a rejected batch until then earns kafkaguard offences, and a
        // 60 s loop would ban this host (and the other clients of the suite with it).
        boolean oversized = maxRequest > (1 << 20);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, oversized ? "15000" : "60000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, oversized ? "10000" : "30000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group) {
        Properties p = props(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kafkaguard-e2e-java");
        if (group != null) p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    static void produce(KafkaProducer<byte[], byte[]> p, String topic, List<byte[][]> recs) throws Exception {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        for (byte[][] kv : recs) fs.add(p.send(new ProducerRecord<>(topic, kv[0], kv[1])));
        for (Future<RecordMetadata> f : fs) f.get(60, TimeUnit.SECONDS);
    }

    /** poll prints up to want records as TAG lines, then keeps polling 2 s for extras, then commits. */
    static void poll(KafkaConsumer<byte[], byte[]> c, String tag, int want, boolean commit) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        long settleUntil = Long.MAX_VALUE;
        int got = 0;
        while (System.nanoTime() < Math.min(deadline, settleUntil)) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(250))) {
                if (r.key() != null && new String(r.key()).equals("big")) continue;
                System.out.println(tag + " " + B64.encodeToString(r.key()) + " " + B64.encodeToString(r.value()));
                got++;
            }
            if (got >= want && settleUntil == Long.MAX_VALUE) settleUntil = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        }
        if (commit) c.commitSync(Duration.ofSeconds(30));
    }
}
