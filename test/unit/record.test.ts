import { describe, expect, it } from 'vitest';
import { RecordBatch, RecordFlag } from '../../src/record.js';
import { buildRecords, ipv4 } from './records.js';

const v6 = (...groups: number[]): number[] => groups.flatMap((g) => [g >> 8, g & 0xff]);

describe('decoder', () => {
  const bytes = buildRecords([
    {
      type: 'insert', l4proto: 6, tcpState: 3, netns: 4026532000, netnsCookie: 4097n, tsNs: 123_456_789_012n,
      status: 0x18e, mark: 7, zone: 3, buckets: [261_000, 5], chain: [2, 1],
      task: { pid: 4_000_123, cgroupId: 2n ** 40n + 77n, comm: 'curl' },
      orig: { src: ipv4(198, 18, 1, 1), dst: ipv4(198, 18, 1, 2), sport: 40_001, dport: 443 },
      reply: { src: ipv4(198, 18, 1, 2), dst: ipv4(198, 18, 1, 1), sport: 443, dport: 40_001 },
    },
    {
      type: 'destroy', l3proto: 10, l4proto: 17, netns: 4026531840, netnsCookie: 0x1234_8765_4321n, tsNs: 2n ** 40n + 5n,
      lifetimeNs: 30_000_000_000n,
      orig: { src: v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), dst: v6(0xfd00, 0, 0, 0, 0, 0, 0, 0x53), sport: 5353, dport: 53 },
      reply: { src: v6(0xfd00, 0, 0, 0, 0, 0, 0, 0x53), dst: v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), sport: 53, dport: 5353 },
    },
    {
      type: 'insert', l4proto: 1, netns: 1, flags: 8, interrupt: true,
      orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport: 0x1234, dport: 0x0800 },
      reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 0x1234, dport: 0x0000 },
    },
    {
      type: 'insert', l4proto: 17, netns: 4026532000, netnsCookie: 2n ** 52n + 3n, chain: [96, 4], chainCapped: true,
      orig: { src: ipv4(10, 0, 0, 3), dst: ipv4(10, 0, 0, 4), sport: 1000, dport: 53 },
      reply: { src: ipv4(10, 0, 0, 4), dst: ipv4(10, 0, 0, 3), sport: 53, dport: 1000 },
    },
  ]);
  const batch = new RecordBatch(bytes);

  it('counts whole records only', () => {
    expect(batch.count).toBe(4);
    expect(new RecordBatch(bytes, 335).count).toBe(1);
    expect(new RecordBatch(bytes, 336).count).toBe(2);
  });

  it('decodes an IPv4 TCP insert with buckets and chain', () => {
    expect(batch.decode(0)).toEqual({
      type: 'insert', context: 'task', task: { pid: 4_000_123, cgroupId: 2 ** 40 + 77, comm: 'curl' },
      tsNs: 123_456_789_012, netns: 4026532000, netnsCookie: 4097, l3proto: 2, l4proto: 6, proto: 'tcp',
      tcpState: 'established', status: 0x18e, mark: 7, zone: 3, late: false, chainCapped: false,
      buckets: { orig: 261_000, reply: 5 }, chain: { orig: 2, reply: 1 },
      orig: { src: '198.18.1.1', dst: '198.18.1.2', sport: 40_001, dport: 443 },
      reply: { src: '198.18.1.2', dst: '198.18.1.1', sport: 443, dport: 40_001 },
    });
  });

  it('decodes an IPv6 UDP destroy with its lifetime and compresses addresses', () => {
    const r = batch.decode(1);
    expect(r).toMatchObject({ type: 'destroy', proto: 'udp', l3proto: 10, lifetimeNs: 30_000_000_000, tsNs: 2 ** 40 + 5 });
    expect(r.orig).toEqual({ src: '2001:db8::1', dst: 'fd00::53', sport: 5353, dport: 53 });
    expect(r.tcpState).toBeUndefined();
    expect(r.buckets).toBeUndefined();
    expect(r.chain).toBeUndefined();
  });

  it('decodes the context: a process, softirq, or unknown (destroys)', () => {
    expect([...batch].map((r) => r.context)).toEqual(['task', 'unknown', 'interrupt', 'unknown']);
    expect(batch.decode(2).task).toBeUndefined();
    expect(batch.decode(1).task).toBeUndefined();
    expect([batch.context(0), batch.tgid(0), batch.cgroupId(0), batch.comm(0)]).toEqual([1, 4_000_123, 2 ** 40 + 77, 'curl']);
  });

  it('reads a 15-character comm, NUL-terminated by the kernel', () => {
    const one = new RecordBatch(buildRecords([{ type: 'insert', l4proto: 6, netns: 1, task: { pid: 1, cgroupId: 1n, comm: 'kube-controller-manager' }, orig: { src: ipv4(1, 1, 1, 1), dst: ipv4(1, 1, 1, 2), sport: 1, dport: 2 }, reply: { src: ipv4(1, 1, 1, 2), dst: ipv4(1, 1, 1, 1), sport: 2, dport: 1 } }]));
    expect(one.decode(0).task?.comm).toBe('kube-controller');
  });

  it('decodes ICMP id and type/code, and the late flag', () => {
    const r = batch.decode(2);
    expect(r).toMatchObject({ proto: 'icmp', late: true, chainCapped: false, netnsCookie: 0 });
    expect(r.orig.sport).toBe(0x1234);
    expect(r.orig.dport >> 8).toBe(8); // echo request
    expect(r.lifetimeNs).toBeUndefined();
  });

  it('decodes the netns cookie as a full u64 (both halves)', () => {
    expect(batch.decode(1).netnsCookie).toBe(0x1234_8765_4321);
    expect(batch.decode(3).netnsCookie).toBe(2 ** 52 + 3);
  });

  it('decodes the chain-capped flag apart from the chain flag', () => {
    const r = batch.decode(3);
    expect(r.chainCapped).toBe(true);
    expect(r.chain).toEqual({ orig: 96, reply: 4 });
    expect(r.late).toBe(false);
    expect(batch.flags(3)).toBe(RecordFlag.chain | RecordFlag.chainCapped);
    // A record with a chain but no cap: the flag is clear.
    expect(batch.decode(0).chainCapped).toBe(false);
  });

  it('reads single fields in place, the same as the full decode', () => {
    expect([batch.type(0), batch.type(1)]).toEqual([1, 2]);
    expect(batch.netns(1)).toBe(4026531840);
    expect(batch.l4proto(2)).toBe(1);
    expect(batch.tsNs(1)).toBe(2 ** 40 + 5);
    expect(batch.lifetimeNs(1)).toBe(30e9);
    expect([0, 1, 2, 3].map((i) => batch.netnsCookie(i))).toEqual([4097, 0x1234_8765_4321, 0, 2 ** 52 + 3]);
    expect([0, 1, 2, 3].map((i) => batch.netnsCookie(i))).toEqual([...batch].map((r) => r.netnsCookie));
    expect([...batch].map((r) => r.type)).toEqual(['insert', 'destroy', 'insert', 'insert']);
  });
});
