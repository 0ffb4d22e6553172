// The engine on synthetic record streams with known answers, and a fake clock.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.js';
import { DEFAULT_STORM_CONFIG } from '../../../src/engine/storms.js';
import { RecordBatch } from '../../../src/record.js';
import { buildRecords, ipv4, type RawRecord } from '../records.js';

const S = 1_000_000_000n; // one second in ns
const TCP = 6;
const UDP = 17;
const TIME_WAIT = 7;

function rec(type: 'insert' | 'destroy', at: bigint, extra: Partial<RawRecord> = {}): RawRecord {
  return {
    type,
    l4proto: UDP,
    tsNs: at,
    netns: 4026532000,
    netnsCookie: 11n,
    orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport: 1000, dport: 53 },
    reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 53, dport: 1000 },
    ...extra,
  };
}

const batch = (records: RawRecord[]) => new RecordBatch(buildRecords(records));

describe('Engine', () => {
  it('gives exact rates over 1, 10 and 60 s, net growth, and totals', () => {
    const e = new Engine();
    const records: RawRecord[] = [];
    // Seconds 100..159: 10 inserts a second; seconds 150..159 also 4 destroys a second.
    for (let s = 100n; s < 160n; s++) {
      for (let k = 0; k < 10; k++) records.push(rec('insert', s * S + BigInt(k)));
      if (s >= 150n) for (let k = 0; k < 4; k++) records.push(rec('destroy', s * S + 500n, { lifetimeNs: 2n * S }));
    }
    e.ingest(batch(records));
    const v = e.view(Number(160n * S));
    expect(v.totals).toEqual({ inserts: 600, destroys: 40 });
    expect(v.windows['1s']).toEqual({ insertsPerSecond: 10, destroysPerSecond: 4, netPerSecond: 6 });
    expect(v.windows['10s']).toEqual({ insertsPerSecond: 10, destroysPerSecond: 4, netPerSecond: 6 });
    expect(v.windows['60s']).toEqual({ insertsPerSecond: 10, destroysPerSecond: 40 / 60, netPerSecond: 10 - 40 / 60 });
    expect(v.windows.ewma.insertsPerSecond).toBeCloseTo(10, 9);
    expect(v.insertsSeries).toEqual(new Array(60).fill(10));
    // Ten seconds later with nothing new: the 1 s and 10 s windows are empty.
    const later = e.view(Number(170n * S));
    expect(later.windows['10s'].insertsPerSecond).toBe(0);
    expect(later.windows['60s'].insertsPerSecond).toBe(500 / 60);
  });

  it('gives a window longer than what was watched as a rate over the seconds watched', () => {
    const e = new Engine({ startNs: Number(100n * S + 200_000_000n) }); // watching from 100.2 s
    const records: RawRecord[] = [];
    for (let s = 101n; s < 105n; s++) for (let k = 0; k < 10; k++) records.push(rec('insert', s * S + BigInt(k)));
    e.ingest(batch(records));
    const w = e.view(Number(105n * S)).windows;
    // Seconds 101-104 watched whole: 40 inserts over 4 s, in the 10 s and 60 s windows alike.
    expect([w['1s'].insertsPerSecond, w['10s'].insertsPerSecond, w['60s'].insertsPerSecond]).toEqual([10, 10, 10]);
  });

  it('splits by protocol, netns (by cookie) and final TCP state', () => {
    const e = new Engine();
    e.ingest(
      batch([
        rec('insert', 10n * S, { l4proto: TCP }),
        rec('insert', 10n * S, { netnsCookie: 12n }),
        rec('insert', 10n * S, { netnsCookie: 12n }),
        rec('destroy', 10n * S, { l4proto: TCP, tcpState: TIME_WAIT, lifetimeNs: S / 2n }),
      ]),
    );
    const v = e.view(Number(11n * S));
    expect(v.protocols.map((p) => [p.proto, p.windows['1s'].insertsPerSecond])).toEqual([
      ['udp', 2],
      ['tcp', 1],
    ]);
    expect(v.netns.map((n) => [n.cookie, n.inode, n.inserts, n.destroys])).toEqual([
      [12, 4026532000, 2, 0],
      [11, 4026532000, 1, 1],
    ]);
    expect(v.tcpStates).toEqual([{ state: 'time_wait', destroys: 1, destroysPerSecond10s: 0.1 }]);
  });

  it('keeps lifetimes per protocol and final state, and entries that predate the start apart', () => {
    const e = new Engine();
    const records = [
      ...[1, 2, 3, 4].map((s) => rec('destroy', 50n * S, { lifetimeNs: BigInt(s) * S })),
      rec('destroy', 50n * S), // no lifetime: inserted before ctstorm started
      rec('destroy', 50n * S, { l4proto: TCP, tcpState: TIME_WAIT, lifetimeNs: 120n * S }),
    ];
    e.ingest(batch(records));
    const v = e.view(Number(51n * S));
    const udp = v.lifetimes.find((l) => l.proto === 'udp')!;
    expect(udp).toMatchObject({ count: 4, predating: 1, max: 4, sum: 10 });
    expect(udp.p50).toBeGreaterThan(2 / 1.1);
    expect(udp.p50).toBeLessThan(2 * 1.1);
    expect(v.lifetimes.find((l) => l.proto === 'tcp')).toMatchObject({ state: 'time_wait', count: 1, max: 120, predating: 0 });
  });

  it('names the top sources and destinations of the last complete epoch', () => {
    const e = new Engine({ topCapacity: 10, topEpochSeconds: 10 });
    const records: RawRecord[] = [];
    for (let k = 0; k < 30; k++) records.push(rec('insert', 20n * S, { orig: { src: ipv4(10, 1, 0, 7), dst: ipv4(10, 9, 9, 9), sport: k, dport: 443 } }));
    for (let k = 0; k < 5; k++) records.push(rec('insert', 21n * S, { orig: { src: ipv4(10, 1, 0, 8), dst: ipv4(10, 9, 9, 9), sport: k, dport: 80 } }));
    e.ingest(batch(records));
    // Epoch 20..29 not complete yet, and none before it saw an insert: the current one so far.
    const early = e.view(Number(25n * S)).top;
    expect([early.partial, early.sources.map((t) => [t.address, t.inserts])]).toEqual([true, [['10.1.0.7', 30], ['10.1.0.8', 5]]]);
    const v = e.view(Number(31n * S));
    expect(v.top.partial).toBe(false);
    expect(v.top.sources).toEqual([
      { address: '10.1.0.7', inserts: 30, error: 0 },
      { address: '10.1.0.8', inserts: 5, error: 0 },
    ]);
    expect(v.top.destinations).toEqual([
      { address: '10.9.9.9', port: 443, inserts: 30, error: 0 },
      { address: '10.9.9.9', port: 80, inserts: 5, error: 0 },
    ]);
    expect(e.view(Number(45n * S)).top.sources).toEqual([]); // an epoch without inserts came between
  });

  it('names the processes that made inserts, and counts inserts by context', () => {
    const e = new Engine({ topCapacity: 10, topEpochSeconds: 10 });
    const curl = { pid: 4100, cgroupId: 9001n, comm: 'curl' };
    const envoy = { pid: 77, cgroupId: 12n, comm: 'envoy' };
    const records: RawRecord[] = [];
    for (let k = 0; k < 12; k++) records.push(rec('insert', 20n * S, { task: curl }));
    for (let k = 0; k < 3; k++) records.push(rec('insert', 21n * S, { task: envoy }));
    for (let k = 0; k < 4; k++) records.push(rec('insert', 21n * S, { task: curl }));
    for (let k = 0; k < 6; k++) records.push(rec('insert', 22n * S, { interrupt: true }));
    records.push(rec('insert', 22n * S), rec('destroy', 23n * S, { task: curl }));
    e.ingest(batch(records));
    const v = e.view(Number(31n * S));
    expect(v.top.processes).toEqual([
      { pid: 4100, comm: 'curl', cgroupId: 9001, inserts: 16, error: 0 },
      { pid: 77, comm: 'envoy', cgroupId: 12, inserts: 3, error: 0 },
    ]);
    // Destroys carry no context and are not counted here.
    expect(v.contexts).toEqual({ process: 19, softirq: 6, kernel: 0, unknown: 1 });
  });

  it('names the backends DNAT\'d inserts went to (the reply\'s source), apart from the Service address', () => {
    const e = new Engine({ topCapacity: 10, topEpochSeconds: 10 });
    const toService = (backend: number[], port: number): Partial<RawRecord> => ({
      status: 0x20 | 0x08, // IPS_DST_NAT | IPS_CONFIRMED
      orig: { src: ipv4(10, 244, 0, 9), dst: ipv4(10, 96, 0, 10), sport: 40000, dport: 53 },
      reply: { src: backend, dst: ipv4(10, 244, 0, 9), sport: port, dport: 40000 },
    });
    const records: RawRecord[] = [];
    for (let k = 0; k < 6; k++) records.push(rec('insert', 20n * S, toService(ipv4(10, 244, 1, 5), 5353)));
    for (let k = 0; k < 2; k++) records.push(rec('insert', 21n * S, toService(ipv4(10, 244, 2, 7), 5353)));
    records.push(rec('insert', 21n * S)); // not NAT'd: no backend
    e.ingest(batch(records));
    const v = e.view(Number(31n * S));
    expect(v.top.backends).toEqual([
      { address: '10.244.1.5', port: 5353, inserts: 6, error: 0 },
      { address: '10.244.2.7', port: 5353, inserts: 2, error: 0 },
    ]);
    expect(v.top.destinations[0]).toEqual({ address: '10.96.0.10', port: 53, inserts: 8, error: 0 });
  });

  it('keeps the processes of a storm with the storm', () => {
    const e = new Engine({ topCapacity: 10, topEpochSeconds: 10, storms: { ...DEFAULT_STORM_CONFIG, floorPerSecond: 100 } });
    const calm: RawRecord[] = [];
    for (let sec = 0n; sec < 60n; sec++) calm.push(rec('insert', sec * S, { task: { pid: 1, cgroupId: 1n, comm: 'calm' } }));
    e.ingest(batch(calm));
    const storm: RawRecord[] = [];
    for (let sec = 60n; sec < 64n; sec++) for (let k = 0; k < 500; k++) storm.push(rec('insert', sec * S, { task: { pid: 4242, cgroupId: 7n, comm: 'reconnect' } }));
    e.ingest(batch(storm));
    for (let sec = 64n; sec < 70n; sec++) e.advance(Number(sec * S));
    const v = e.view(Number(70n * S));
    const st = v.storms.current ?? v.storms.past[0];
    expect(st?.processes[0]).toEqual({ pid: 4242, comm: 'reconnect', cgroupId: 7, inserts: 2000, error: 0 });
  });

  it('counts chain lengths, collisions, the longest chain and capped walks', () => {
    const e = new Engine();
    e.ingest(
      batch([
        rec('insert', S, { buckets: [5, 9], chain: [1, 1] }), // both chains were empty
        rec('insert', S, { buckets: [5, 5], chain: [2, 2] }), // own two nodes in one chain
        rec('insert', S, { buckets: [5, 7], chain: [4, 1] }), // joined a chain of 3
        rec('insert', S, { buckets: [1, 2], chain: [97, 3], chainCapped: true }),
        rec('insert', S), // tracepoint-late insert: no chain
      ]),
    );
    const c = e.view(Number(2n * S)).chains;
    expect(c).toEqual({ inserts: 4, collisions: 2, longest: 97, capped: 1, histogram: { 1: 3, 2: 2, 3: 1, 4: 1, 97: 1 } });
  });

  it('keeps inserts - destroys equal to the growth it reports, on a random stream', () => {
    const e = new Engine();
    let seed = 99;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const records: RawRecord[] = [];
    let net = 0;
    for (let i = 0; i < 3000; i++) {
      const insert = rand() < 0.6;
      net += insert ? 1 : -1;
      records.push(rec(insert ? 'insert' : 'destroy', 200n * S + BigInt(Math.floor(rand() * 60e9)), insert ? {} : { lifetimeNs: S }));
    }
    e.ingest(batch(records));
    const v = e.view(Number(260n * S));
    expect(v.totals.inserts - v.totals.destroys).toBe(net);
    expect(v.windows['60s'].netPerSecond * 60).toBeCloseTo(net, 6);
  });

  it('names the peers of a storm whose onset fell in the epoch before its detection', () => {
    const e = new Engine();
    const quiet: RawRecord[] = [];
    for (let s = 1000n; s < 1058n; s++) quiet.push(rec('insert', s * S));
    e.ingest(batch(quiet));
    e.view(Number(1058n * S));
    const peer = { src: ipv4(10, 9, 9, 9), dst: ipv4(10, 0, 0, 80), sport: 1000, dport: 8080 };
    // One loud second, 1059: the last of its epoch; detected at 1061, in the next one.
    e.ingest(batch(Array.from({ length: 3000 }, (_, k) => rec('insert', 1059n * S + BigInt(k), { orig: peer }))));
    const current = e.view(Number(1061n * S)).storms.current!;
    expect(current).toMatchObject({ startSeconds: 1059, inserts: 3000 });
    expect(current.sources[0]).toEqual({ address: '10.9.9.9', inserts: 3000, error: 0 });
  });

  it('detects a storm from the records and names the namespace behind it', () => {
    const e = new Engine();
    const quiet: RawRecord[] = [];
    for (let s = 1000n; s < 1060n; s++) for (let k = 0; k < 100; k++) quiet.push(rec('insert', s * S + BigInt(k)));
    e.ingest(batch(quiet));
    expect(e.view(Number(1060n * S)).storms).toMatchObject({ current: null, past: [], baselinePerSecond: 100 });
    const storm: RawRecord[] = [];
    const peer = { src: ipv4(10, 9, 9, 9), dst: ipv4(10, 0, 0, 80), sport: 1000, dport: 8080 };
    for (let s = 1060n; s < 1065n; s++) for (let k = 0; k < 5000; k++) storm.push(rec('insert', s * S + BigInt(k), { netnsCookie: 42n, netns: 4026533333, orig: peer }));
    e.ingest(batch(storm));
    expect(e.view(Number(1061n * S)).storms.current).toBeNull(); // 1060 still in its grace second
    const during = e.view(Number(1063n * S)).storms.current!;
    expect(during).toMatchObject({ startSeconds: 1060, endSeconds: null, peakPerSecond: 5000 });
    expect(during.netns).toEqual([{ cookie: 42, inode: 4026533333, inserts: 10000 }]);
    // Peers: the storm's epoch (1060-1069) so far, exact here (one source, one destination).
    expect(during.sources).toEqual([{ address: '10.9.9.9', inserts: 25000, error: 0 }]);
    expect(during.destinations).toEqual([{ address: '10.0.0.80', port: 8080, inserts: 25000, error: 0 }]);
    const after = e.view(Number(1070n * S)).storms;
    expect(after.current).toBeNull();
    expect(after.past).toEqual([
      expect.objectContaining({
        startSeconds: 1060, endSeconds: 1064, durationSeconds: 5, inserts: 25000, peakPerSecond: 5000,
        sources: [{ address: '10.9.9.9', inserts: 25000, error: 0 }],
      }),
    ]);
    expect(after.baselinePerSecond).toBeCloseTo(100 * Math.exp(-1 / 60), 6); // frozen through the storm, then one quiet second
  });
});
