// Hand-built records, byte by byte as the probe writes them, for unit tests.
import { Offset, RECORD_SIZE, RECORD_VERSION, RecordContext, RecordFlag, RecordType, TupleOffset } from '../../src/record.js';

export interface RawTuple {
  src: number[];
  dst: number[];
  sport: number;
  dport: number;
}

export interface RawRecord {
  type: 'insert' | 'destroy';
  l3proto?: number;
  l4proto: number;
  tcpState?: number;
  flags?: number;
  tsNs?: bigint;
  lifetimeNs?: bigint;
  netns: number;
  /** The netns cookie (u64). */
  netnsCookie?: bigint;
  status?: number;
  mark?: number;
  zone?: number;
  buckets?: [number, number];
  chain?: [number, number];
  /** Sets CTSTORM_F_CHAIN_CAPPED (the chain lengths are a floor). */
  chainCapped?: boolean;
  orig: RawTuple;
  reply: RawTuple;
  /** An insert made by a process (CTSTORM_CTX_TASK), or in softirq. */
  task?: { pid: number; cgroupId: bigint; comm: string };
  interrupt?: boolean;
}

function writeTuple(v: DataView, at: number, t: RawTuple): void {
  t.src.forEach((b, i) => v.setUint8(at + TupleOffset.src + i, b));
  t.dst.forEach((b, i) => v.setUint8(at + TupleOffset.dst + i, b));
  v.setUint16(at + TupleOffset.sport, t.sport, false);
  v.setUint16(at + TupleOffset.dport, t.dport, false);
}

export function buildRecords(records: RawRecord[]): Uint8Array {
  const bytes = new Uint8Array(records.length * RECORD_SIZE);
  const v = new DataView(bytes.buffer);
  records.forEach((r, i) => {
    const at = i * RECORD_SIZE;
    let flags = r.flags ?? 0;
    if (r.buckets) flags |= RecordFlag.buckets;
    if (r.chain) flags |= RecordFlag.chain;
    if (r.lifetimeNs !== undefined) flags |= RecordFlag.lifetime;
    if (r.chainCapped) flags |= RecordFlag.chainCapped;
    v.setUint8(at + Offset.version, RECORD_VERSION);
    v.setUint8(at + Offset.type, r.type === 'insert' ? RecordType.insert : RecordType.destroy);
    v.setUint8(at + Offset.l3proto, r.l3proto ?? 2);
    v.setUint8(at + Offset.l4proto, r.l4proto);
    v.setUint8(at + Offset.tcpState, r.tcpState ?? 0);
    v.setUint16(at + Offset.flags, flags, true);
    if (r.task) {
      v.setUint8(at + Offset.context, RecordContext.task);
      v.setUint32(at + Offset.tgid, r.task.pid, true);
      v.setBigUint64(at + Offset.cgroupId, r.task.cgroupId, true);
      [...r.task.comm].slice(0, 15).forEach((ch, k) => v.setUint8(at + Offset.comm + k, ch.charCodeAt(0)));
    } else if (r.interrupt) {
      v.setUint8(at + Offset.context, RecordContext.interrupt);
    }
    v.setBigUint64(at + Offset.tsNs, r.tsNs ?? 0n, true);
    v.setBigUint64(at + Offset.lifetimeNs, r.lifetimeNs ?? 0n, true);
    v.setUint32(at + Offset.netnsIno, r.netns, true);
    v.setUint32(at + Offset.status, r.status ?? 0, true);
    v.setUint32(at + Offset.mark, r.mark ?? 0, true);
    v.setUint16(at + Offset.zone, r.zone ?? 0, true);
    v.setUint32(at + Offset.bucketOrig, r.buckets?.[0] ?? 0, true);
    v.setUint32(at + Offset.bucketReply, r.buckets?.[1] ?? 0, true);
    v.setUint16(at + Offset.chainOrig, r.chain?.[0] ?? 0, true);
    v.setUint16(at + Offset.chainReply, r.chain?.[1] ?? 0, true);
    writeTuple(v, at + Offset.orig, r.orig);
    writeTuple(v, at + Offset.reply, r.reply);
    v.setBigUint64(at + Offset.netnsCookie, r.netnsCookie ?? 0n, true);
  });
  return bytes;
}

const v4 = (a: number, b: number, c: number, d: number): number[] => [a, b, c, d, ...new Array<number>(12).fill(0)];
export const ipv4 = v4;
