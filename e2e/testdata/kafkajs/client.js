// kafkajs, driven by kafkaguard's e2e suite (e2e/kafka4_clients_test.go).
//
// Usage: node client.js BOOTSTRAP TOPIC GROUP OVERSIZE < records
// where each stdin line is "1|2 base64(key) base64(value)" (batch 1 or 2). Results are stdout
// lines the Go test parses: VERSION, BROKER, DIRECT, GROUP1, GROUP2, RB1, RB2, RBASSIGN, OVERSIZED.
// A consumed record's line ends with its partition and offset, so the test can tell kafkajs
// reading one log position twice (its fetchers may, see records_test.go) from a record that is
// in the log twice. KG_CLIENT_DEBUG=FILE logs kafkajs at DEBUG (every request) into FILE.
// Waits are bounded. RB1/RB2: two members share a topic and commit; one leaves; the other must take
// over its partitions at the committed offsets.
'use strict';
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, group, oversizeArg] = process.argv.slice(2);
const oversize = Number(oversizeArg);
const batches = { 1: [], 2: [], 3: [], 4: [] };
for (const line of fs.readFileSync(0, 'utf8').split('\n')) {
  const f = line.trim().split(' ');
  if (f.length !== 3 || !batches[f[0]]) continue;
  batches[f[0]].push({ key: Buffer.from(f[1], 'base64'), value: Buffer.from(f[2], 'base64') });
}
const [first, second, third, fourth] = [batches[1], batches[2], batches[3], batches[4]];
const out = (...parts) => process.stdout.write(parts.join(' ') + '\n');
const rec = (tag, m, partition) => out(tag, (m.key || Buffer.alloc(0)).toString('base64'), (m.value || Buffer.alloc(0)).toString('base64'), partition, m.offset);

// KG_CLIENT_SECURITY: a secure listener's settings, "key=value;..." with librdkafka's names
// (security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location,
// ssl.certificate.location, ssl.key.location), as every e2e client program reads them. Unset: plaintext.
const security = Object.fromEntries((process.env.KG_CLIENT_SECURITY || '').split(';')
  .filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const protocol = security['security.protocol'] || 'PLAINTEXT';
let ssl;
if (protocol.endsWith('SSL')) {
  ssl = { rejectUnauthorized: true };
  if (security['ssl.ca.location']) ssl.ca = [fs.readFileSync(security['ssl.ca.location'])];
  if (security['ssl.certificate.location']) ssl.cert = fs.readFileSync(security['ssl.certificate.location']);
  if (security['ssl.key.location']) ssl.key = fs.readFileSync(security['ssl.key.location']);
}
const sasl = protocol.startsWith('SASL')
  ? { mechanism: (security['sasl.mechanism'] || 'PLAIN').toLowerCase(), username: security['sasl.username'], password: security['sasl.password'] }
  : undefined;

const kafka = new Kafka({
  clientId: 'kafkaguard-e2e-kafkajs',
  brokers: bootstrap.split(','),
  ssl,
  sasl,
  logLevel: process.env.KG_CLIENT_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
  logCreator: () => ({ level, label, log }) => {
    if (process.env.KG_CLIENT_DEBUG) fs.appendFileSync(process.env.KG_CLIENT_DEBUG, `${log.timestamp} ${label} ${JSON.stringify(log)}\n`);
  },
  retry: { retries: 5 },
});

async function consume(tag, want, groupId, fromBeginning) {
  const c = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await c.connect();
  await c.subscribe({ topic, fromBeginning });
  let got = 0;
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  const timer = setTimeout(resolveDone, 90000);
  await c.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (message.key && message.key.toString() === 'big') return;
      rec(tag, message, partition);
      got++;
      await c.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      if (got >= want) setTimeout(resolveDone, 2000);
    },
  });
  await done;
  clearTimeout(timer);
  await c.disconnect();
}

async function main() {
  const { version } = require('kafkajs/package.json');
  out('VERSION', 'kafkajs', version);
  // Idempotent, as every other client in the suite is by default: kafkajs 2.2.4 retries a send
  // whose first Produce to a just-created topic drew UNKNOWN_TOPIC_OR_PARTITION from one broker
  // while another broker's Produce of the same send was still in flight and then succeeded, so a
  // non-idempotent producer writes that broker's records twice (seen in CI against 3.9.1, 107 of
  // 300 records in one partition; the broker's log held them twice).
  const p = kafka.producer({ allowAutoTopicCreation: true, idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  await p.send({ topic, acks: -1, messages: first });

  const admin = kafka.admin();
  await admin.connect();
  const cl = await admin.describeCluster();
  for (const b of cl.brokers) out('BROKER', `${b.host}:${b.port}`);
  await admin.disconnect();

  // kafkajs has no group-less consumer: a throwaway group reads the topic from the start.
  await consume('DIRECT', first.length, group + '-direct', true);
  await consume('GROUP1', first.length, group, true);
  await p.send({ topic, acks: -1, messages: second });
  await consume('GROUP2', second.length, group, true);

  // Rebalance: members a and b share rbtopic; b leaves; a must take over b's partitions.
  const rbtopic = topic + '-rb';
  await p.send({ topic: rbtopic, acks: -1, messages: third });
  const assigned = { a: 0, b: 0 };
  const member = async (name, tag, counter) => {
    const c = kafka.consumer({ groupId: group + '-rb', sessionTimeout: 10000, heartbeatInterval: 1000, rebalanceTimeout: 10000 });
    c.on(c.events.GROUP_JOIN, (e) => {
      const mine = e.payload.memberAssignment[rbtopic] || [];
      assigned[name] = mine.length;
    });
    await c.connect();
    await c.subscribe({ topic: rbtopic, fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        rec(counter.tag, message, partition);
        counter.got++;
        await c.commitOffsets([{ topic: rbtopic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      },
    });
    return c;
  };
  const counter = { tag: 'RB1', got: 0 };
  const a = await member('a', 'RB1', counter);
  const b = await member('b', 'RB1', counter);
  const waitFor = async (cond, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end && !cond()) await new Promise((r) => setTimeout(r, 100));
  };
  await waitFor(() => counter.got >= third.length && assigned.a > 0 && assigned.b > 0 && assigned.a + assigned.b === 3, 90000);
  const before = [assigned.a, assigned.b];
  await b.disconnect();
  await waitFor(() => assigned.a === 3, 60000);
  counter.tag = 'RB2';
  counter.got = 0;
  await p.send({ topic: rbtopic, acks: -1, messages: fourth });
  await waitFor(() => counter.got >= fourth.length, 90000);
  await new Promise((r) => setTimeout(r, 2000));
  out('RBASSIGN', before[0], before[1], assigned.a);
  await a.disconnect();

  const start = Date.now();
  try {
    await p.send({ topic, acks: -1, messages: [{ key: 'big', value: Buffer.alloc(oversize, 120) }] });
    out('OVERSIZED', 'none: delivered');
  } catch (e) {
    const cause = e.originalError || e;
    out('OVERSIZED', `${cause.name}: ${cause.type || ''} ${cause.message} (${((Date.now() - start) / 1000).toFixed(2)}s)`);
  }
  await p.disconnect();
}

main().then(() => process.exit(0), (e) => { out('ERROR', e.stack || e); process.exit(1); });
