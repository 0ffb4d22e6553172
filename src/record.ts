// Decoder for struct ctstorm_record (bpf/ctstorm.h). test/unit/layout.test.ts
// compiles the header and checks every offset here against it.
import { AF_INET6, protoName, tcpStateName } from './protocols.js';

export const RECORD_SIZE = 168;
/** 2: inserts carry their process context (context, tgid, cgroupId, comm). */
export const RECORD_VERSION = 2;

export const Offset = {
  version: 0,
  type: 1,
  l3proto: 2,
  l4proto: 3,
  tcpState: 4,
  context: 5,
  flags: 6,
  tsNs: 8,
  lifetimeNs: 16,
  netnsIno: 24,
  status: 28,
  mark: 32,
  zone: 36,
  bucketOrig: 40,
  bucketReply: 44,
  chainOrig: 48,
  chainReply: 50,
  orig: 56,
  reply: 92,
  netnsCookie: 128,
  tgid: 136,
  cgroupId: 144,
  comm: 152,
} as const;

/** enum ctstorm_context: where an insert happened. */
export const RecordContext = { unknown: 0, task: 1, interrupt: 2, kernel: 3 } as const;
export const COMM_SIZE = 16;

/** Within struct ctstorm_tuple. */
export const TupleOffset = { src: 0, dst: 16, sport: 32, dport: 34, size: 36 } as const;

export const RecordType = { insert: 1, destroy: 2 } as const;

export const RecordFlag = {
  buckets: 1 << 0,
  chain: 1 << 1,
  lifetime: 1 << 2,
  late: 1 << 3,
  chainCapped: 1 << 4,
} as const;

export interface Tuple {
  src: string;
  dst: string;
  /** Port, or ICMP id. */
  sport: number;
  /** Port; for ICMP the type (high byte) and code (low byte). */
  dport: number;
}

/** The process (or kernel thread) an insert happened in. */
export interface TaskContext {
  /** Process id in the initial pid namespace. */
  pid: number;
  /** cgroup v2 id: the inode of the cgroup's directory. */
  cgroupId: number;
  /** The thread's command name. */
  comm: string;
}

export interface CtRecord {
  type: 'insert' | 'destroy';
  /** Inserts: 'task' (a local process made it: see `task`), 'interrupt' (softirq:
   * received or forwarded, no process), 'kernel' (a kernel thread: threaded NAPI,
   * a kworker; `task` names the thread), 'unknown' (destroys, late inserts, a CPU
   * not yet seen outside a softirq). */
  context: 'unknown' | 'task' | 'interrupt' | 'kernel';
  task?: TaskContext;
  tsNs: number;
  /** Destroys only, when the probe saw the insert. */
  lifetimeNs?: number;
  /** Inode of the entry's netns (what `stat -L -c %i /run/netns/NAME` prints; reused by the kernel). */
  netns: number;
  /** The netns cookie: never reused while the machine runs (0 on kernels without one). */
  netnsCookie: number;
  l3proto: number;
  l4proto: number;
  proto: string;
  tcpState?: string;
  status: number;
  mark: number;
  zone: number;
  buckets?: { orig: number; reply: number };
  chain?: { orig: number; reply: number };
  /** A chain was longer than the probe walks (96 nodes): `chain` is a floor. */
  chainCapped: boolean;
  /** Insert reported only when the entry was freed (tracepoint mode). */
  late: boolean;
  orig: Tuple;
  reply: Tuple;
}

/**
 * A batch of records in one buffer, read in place: the hot path (counting,
 * engine) reads single fields by index without building objects.
 */
export class RecordBatch {
  readonly view: DataView;
  readonly count: number;

  constructor(readonly bytes: Uint8Array, length = bytes.byteLength) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, length);
    this.count = Math.floor(length / RECORD_SIZE);
  }

  version(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.version);
  }
  type(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.type);
  }
  l4proto(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.l4proto);
  }
  netns(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.netnsIno, true);
  }
  netnsCookie(i: number): number {
    return readU64(this.view, i * RECORD_SIZE + Offset.netnsCookie);
  }
  l3proto(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.l3proto);
  }
  /** enum tcp_conntrack (0 when not TCP). */
  tcpState(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.tcpState);
  }
  status(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.status, true);
  }
  bucketOrig(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.bucketOrig, true);
  }
  bucketReply(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.bucketReply, true);
  }
  chainOrig(i: number): number {
    return this.view.getUint16(i * RECORD_SIZE + Offset.chainOrig, true);
  }
  chainReply(i: number): number {
    return this.view.getUint16(i * RECORD_SIZE + Offset.chainReply, true);
  }
  /** Original direction's source address as a 32-bit number (IPv4 records). */
  origSrcV4(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.orig + TupleOffset.src, false);
  }
  /** Original direction's destination address as a 32-bit number (IPv4 records). */
  origDstV4(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.orig + TupleOffset.dst, false);
  }
  /** Reply direction's source address (IPv4 records): where a DNAT'd flow really goes. */
  replySrcV4(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.reply + TupleOffset.src, false);
  }
  /** Reply direction's source port. */
  replySport(i: number): number {
    return this.view.getUint16(i * RECORD_SIZE + Offset.reply + TupleOffset.sport, false);
  }
  /** A reply tuple address as text (any family). */
  replyAddress(i: number, which: 'src' | 'dst'): string {
    return address(this.view, i * RECORD_SIZE + Offset.reply + TupleOffset[which], this.l3proto(i));
  }
  /** Original direction's destination port (or ICMP type and code). */
  origDport(i: number): number {
    return this.view.getUint16(i * RECORD_SIZE + Offset.orig + TupleOffset.dport, false);
  }
  /** A tuple address as text (any family), for the rare record that needs it. */
  origAddress(i: number, which: 'src' | 'dst'): string {
    return address(this.view, i * RECORD_SIZE + Offset.orig + TupleOffset[which], this.l3proto(i));
  }
  flags(i: number): number {
    return this.view.getUint16(i * RECORD_SIZE + Offset.flags, true);
  }
  /** enum ctstorm_context (RecordContext). */
  context(i: number): number {
    return this.view.getUint8(i * RECORD_SIZE + Offset.context);
  }
  tgid(i: number): number {
    return this.view.getUint32(i * RECORD_SIZE + Offset.tgid, true);
  }
  cgroupId(i: number): number {
    return readU64(this.view, i * RECORD_SIZE + Offset.cgroupId);
  }
  comm(i: number): string {
    return commAt(this.view, i * RECORD_SIZE + Offset.comm);
  }
  tsNs(i: number): number {
    return readU64(this.view, i * RECORD_SIZE + Offset.tsNs);
  }
  lifetimeNs(i: number): number {
    return readU64(this.view, i * RECORD_SIZE + Offset.lifetimeNs);
  }

  decode(i: number): CtRecord {
    return decodeRecord(this.view, i * RECORD_SIZE);
  }

  *[Symbol.iterator](): IterableIterator<CtRecord> {
    for (let i = 0; i < this.count; i++) yield this.decode(i);
  }
}

/** u64 as a number: exact below 2^53 (104 days of nanoseconds). */
function readU64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 0x1_0000_0000 + view.getUint32(at, true);
}

/** A NUL-terminated command name (the kernel's comm is ASCII in practice; bytes
 * above 127 are kept as Latin-1 rather than dropped). */
function commAt(view: DataView, at: number): string {
  let out = '';
  for (let k = 0; k < COMM_SIZE; k++) {
    const c = view.getUint8(at + k);
    if (c === 0) break;
    out += String.fromCharCode(c);
  }
  return out;
}

function address(view: DataView, at: number, l3proto: number): string {
  if (l3proto !== AF_INET6) {
    return `${view.getUint8(at)}.${view.getUint8(at + 1)}.${view.getUint8(at + 2)}.${view.getUint8(at + 3)}`;
  }
  const groups: string[] = [];
  for (let g = 0; g < 8; g++) groups.push(view.getUint16(at + g * 2, false).toString(16));
  return compressIPv6(groups);
}

/** RFC 5952: the longest run (>= 2) of zero groups becomes "::". */
function compressIPv6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function tuple(view: DataView, at: number, l3proto: number): Tuple {
  return {
    src: address(view, at + TupleOffset.src, l3proto),
    dst: address(view, at + TupleOffset.dst, l3proto),
    sport: view.getUint16(at + TupleOffset.sport, false),
    dport: view.getUint16(at + TupleOffset.dport, false),
  };
}

export function decodeRecord(view: DataView, at: number): CtRecord {
  const type = view.getUint8(at + Offset.type);
  const l3proto = view.getUint8(at + Offset.l3proto);
  const l4proto = view.getUint8(at + Offset.l4proto);
  const flags = view.getUint16(at + Offset.flags, true);
  const context = view.getUint8(at + Offset.context);
  const record: CtRecord = {
    type: type === RecordType.destroy ? 'destroy' : 'insert',
    context: context === RecordContext.task ? 'task' : context === RecordContext.interrupt ? 'interrupt' : context === RecordContext.kernel ? 'kernel' : 'unknown',
    tsNs: readU64(view, at + Offset.tsNs),
    netns: view.getUint32(at + Offset.netnsIno, true),
    netnsCookie: readU64(view, at + Offset.netnsCookie),
    l3proto,
    l4proto,
    proto: protoName(l4proto),
    status: view.getUint32(at + Offset.status, true),
    mark: view.getUint32(at + Offset.mark, true),
    zone: view.getUint16(at + Offset.zone, true),
    late: (flags & RecordFlag.late) !== 0,
    chainCapped: (flags & RecordFlag.chainCapped) !== 0,
    orig: tuple(view, at + Offset.orig, l3proto),
    reply: tuple(view, at + Offset.reply, l3proto),
  };
  if (context === RecordContext.task || context === RecordContext.kernel) {
    record.task = { pid: view.getUint32(at + Offset.tgid, true), cgroupId: readU64(view, at + Offset.cgroupId), comm: commAt(view, at + Offset.comm) };
  }
  if (l4proto === 6) record.tcpState = tcpStateName(view.getUint8(at + Offset.tcpState));
  if (flags & RecordFlag.lifetime) record.lifetimeNs = readU64(view, at + Offset.lifetimeNs);
  if (flags & RecordFlag.buckets) {
    record.buckets = {
      orig: view.getUint32(at + Offset.bucketOrig, true),
      reply: view.getUint32(at + Offset.bucketReply, true),
    };
  }
  if (flags & RecordFlag.chain) {
    record.chain = {
      orig: view.getUint16(at + Offset.chainOrig, true),
      reply: view.getUint16(at + Offset.chainReply, true),
    };
  }
  return record;
}
