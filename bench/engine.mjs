#!/usr/bin/env node
// Engine throughput: synthetic batches of 4096 records fed to the engine on one
// core, in two shapes (mixed TCP/UDP inserts and destroys with lifetimes, chains,
// 1000 sources, 5 netns interleaved; and a storm: UDP inserts from distinct
// sources in one netns to one service); prints records/s (decode in place + aggregate) and writes
// bench/results/engine.json. No kernel, no root.
//   node bench/engine.mjs [seconds=3]      (npm run build first)
import { mkdirSync, writeFileSync } from 'node:fs';
import { Engine } from '../dist/engine/engine.js';
import { Offset, RECORD_SIZE, RecordBatch, TupleOffset } from '../dist/record.js';

const seconds = Number(process.argv[2] ?? 3);
const N = 4096;

/** mixed: a third destroys, TCP and UDP, 1000 sources, two services. storm: a
 * storm's shape, UDP inserts from 4096 distinct sources to one service. */
function syntheticBatch(shape) {
  const bytes = new Uint8Array(N * RECORD_SIZE);
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < N; i++) {
    const at = i * RECORD_SIZE;
    const destroy = shape === 'mixed' && i % 3 === 0;
    v.setUint8(at + Offset.version, 2);
    v.setUint8(at + Offset.type, destroy ? 2 : 1);
    v.setUint8(at + Offset.l3proto, 2);
    const tcp = shape === 'mixed' && i % 2;
    v.setUint8(at + Offset.l4proto, tcp ? 6 : 17);
    v.setUint8(at + Offset.tcpState, tcp ? 7 : 0);
    v.setUint16(at + Offset.flags, 1 | 2 | (destroy ? 4 : 0), true);
    v.setBigUint64(at + Offset.tsNs, 1000n * 1_000_000_000n + BigInt(i) * 100_000n, true);
    v.setBigUint64(at + Offset.lifetimeNs, BigInt(i) * 1_000_000n, true);
    // mixed: records of five netns interleaved one by one (the worst case for
    // the engine's runs); storm: one netns, as a storm from one pod.
    const ns = shape === 'mixed' ? i % 5 : 0;
    v.setUint32(at + Offset.netnsIno, 4026532000 + ns, true);
    v.setBigUint64(at + Offset.netnsCookie, BigInt(1 + ns), true);
    v.setUint32(at + Offset.bucketOrig, (i * 7919) % 262144, true);
    v.setUint32(at + Offset.bucketReply, (i * 104729) % 262144, true);
    v.setUint16(at + Offset.chainOrig, 1 + (i % 4), true);
    v.setUint16(at + Offset.chainReply, 1, true);
    v.setUint32(at + Offset.orig + TupleOffset.src, 0x0a000000 + (shape === 'mixed' ? i % 1000 : i), false);
    v.setUint32(at + Offset.orig + TupleOffset.dst, 0x0a090909, false);
    v.setUint16(at + Offset.orig + TupleOffset.dport, shape === 'mixed' && i % 2 ? 443 : 53, false);
  }
  return new RecordBatch(bytes);
}

function run(shape) {
  const batch = syntheticBatch(shape);
  const engine = new Engine();
  for (let i = 0; i < 50; i++) engine.ingest(batch); // warm up the JIT
  let records = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(seconds * 1e9));
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 20; i++) engine.ingest(batch);
    records += 20 * N;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  const r = { records, seconds: ns / 1e9, recordsPerSecond: Math.round(records / (ns / 1e9)), nsPerRecord: ns / records };
  console.log(`engine (${shape}): ${(r.recordsPerSecond / 1e6).toFixed(2)} M records/s on one core (${r.nsPerRecord.toFixed(0)} ns/record), ${records} records in ${r.seconds.toFixed(2)} s`);
  return r;
}

const mixed = run('mixed');
const storm = run('storm');
const result = { ...mixed, storm };
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/engine.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
