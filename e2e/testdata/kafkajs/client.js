// kafkajs, driven by kafkaguard's e2e suite (e2e/kafka4_clients_test.go).
//
// Usage: node client.js BOOTSTRAP TOPIC GROUP OVERSIZE < records
// where each stdin line is "1|2 base64(key) base64(value)" (batch 1 or 2). Results are stdout
// lines the Go test parses: VERSION, BROKER, DIRECT, GROUP1, GROUP2, OVERSIZED. Waits are bounded.
'use strict';
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, group, oversizeArg] = process.argv.slice(2);
const oversize = Number(oversizeArg);
const first = [];
const second = [];
for (const line of fs.readFileSync(0, 'utf8').split('\n')) {
  const f = line.trim().split(' ');
  if (f.length !== 3) continue;
  (f[0] === '1' ? first : second).push({ key: Buffer.from(f[1], 'base64'), value: Buffer.from(f[2], 'base64') });
}
const out = (...parts) => process.stdout.write(parts.join(' ') + '\n');
const rec = (tag, m) => out(tag, (m.key || Buffer.alloc(0)).toString('base64'), (m.value || Buffer.alloc(0)).toString('base64'));

const kafka = new Kafka({
  clientId: 'kafkaguard-e2e-kafkajs',
  brokers: bootstrap.split(','),
  logLevel: logLevel.NOTHING,
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
      rec(tag, message);
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
  const p = kafka.producer({ allowAutoTopicCreation: true });
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
