// The decoder's offsets against the C header itself: compile a tiny program that
// prints offsetof() of every field, and compare.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CHAIN_BINS } from '../../src/engine/engine.js';
import { MAX_CHAIN_WALK } from '../../src/source.js';
import { healthFromArray } from '../../src/counters.js';
import { Offset, RECORD_SIZE, RECORD_VERSION, RecordContext, RecordFlag, RecordType, TupleOffset } from '../../src/record.js';

const bpfDir = fileURLToPath(new URL('../../bpf', import.meta.url));

function headerFacts(): Record<string, number> {
  const fields: Array<[string, string]> = [
    ['version', 'version'], ['type', 'type'], ['l3proto', 'l3proto'], ['l4proto', 'l4proto'],
    ['tcpState', 'tcp_state'], ['flags', 'flags'], ['tsNs', 'ts_ns'], ['lifetimeNs', 'lifetime_ns'],
    ['netnsIno', 'netns_ino'], ['status', 'status'], ['mark', 'mark'], ['zone', 'zone'],
    ['bucketOrig', 'bucket_orig'], ['bucketReply', 'bucket_reply'], ['chainOrig', 'chain_orig'],
    ['chainReply', 'chain_reply'], ['orig', 'orig'], ['reply', 'reply'], ['netnsCookie', 'netns_cookie'],
    ['context', 'context'], ['tgid', 'tgid'], ['cgroupId', 'cgroup_id'], ['comm', 'comm'],
  ];
  const lines = fields.map(([js, c]) => `printf("\\"${js}\\": %zu,\\n", offsetof(struct ctstorm_record, ${c}));`);
  for (const f of ['src', 'dst', 'sport', 'dport']) {
    lines.push(`printf("\\"tuple.${f}\\": %zu,\\n", offsetof(struct ctstorm_tuple, ${f}));`);
  }
  const consts = ['CTSTORM_RECORD_VERSION', 'CTSTORM_INSERT', 'CTSTORM_DESTROY', 'CTSTORM_F_BUCKETS', 'CTSTORM_F_CHAIN', 'CTSTORM_F_LIFETIME', 'CTSTORM_F_LATE', 'CTSTORM_F_CHAIN_CAPPED', 'CTSTORM_CTX_UNKNOWN', 'CTSTORM_CTX_TASK', 'CTSTORM_CTX_INTERRUPT', 'CTSTORM_CTX_KERNEL'];
  consts.push('CTSTORM_H_UNCONFIRMED_FREES', 'CTSTORM_H_UNTRACKED', 'CTSTORM_H_NETNS_OVERFLOW', 'CTSTORM_H_UNKNOWN_START', 'CTSTORM_H_NAT_CLASH', 'CTSTORM_H_NEVER_HASHED',
    'CTSTORM_H_PENDING_OVERFLOW', 'CTSTORM_H_INSERT_UNPAIRED', 'CTSTORM_H_PENDING_EXPIRED', 'CTSTORM_H_MAX', 'CTSTORM_MAX_WALK', 'CTSTORM_CHAIN_BINS');
  for (const c of consts) lines.push(`printf("\\"${c}\\": %d,\\n", (int)${c});`);
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include "ctstorm.h"\nint main(void) {\nprintf("{");\n${lines.join('\n')}\nprintf("\\"size\\": %zu, \\"tupleSize\\": %zu}", sizeof(struct ctstorm_record), sizeof(struct ctstorm_tuple));\nreturn 0;\n}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'ctstorm-layout-'));
  writeFileSync(join(dir, 'layout.c'), src);
  execFileSync('cc', ['-I', bpfDir, '-o', join(dir, 'layout'), join(dir, 'layout.c')]);
  return JSON.parse(execFileSync(join(dir, 'layout'), { encoding: 'utf8' })) as Record<string, number>;
}

describe('record layout', () => {
  const c = headerFacts();

  it('matches every field offset of struct ctstorm_record', () => {
    for (const [name, offset] of Object.entries(Offset)) expect([name, c[name]]).toEqual([name, offset]);
    expect(c.size).toBe(RECORD_SIZE);
  });

  it('keeps version 1 where it was and appends version 2 (168 bytes)', () => {
    expect(c.netnsCookie).toBe(128);
    expect(c.tgid).toBe(136);
    expect(c.size).toBe(168);
  });

  it('matches struct ctstorm_tuple', () => {
    expect(c['tuple.src']).toBe(TupleOffset.src);
    expect(c['tuple.dst']).toBe(TupleOffset.dst);
    expect(c['tuple.sport']).toBe(TupleOffset.sport);
    expect(c['tuple.dport']).toBe(TupleOffset.dport);
    expect(c.tupleSize).toBe(TupleOffset.size);
  });

  it('matches the version, record types and flags', () => {
    expect(c.CTSTORM_RECORD_VERSION).toBe(RECORD_VERSION);
    expect(c.CTSTORM_INSERT).toBe(RecordType.insert);
    expect(c.CTSTORM_DESTROY).toBe(RecordType.destroy);
    expect(c.CTSTORM_F_BUCKETS).toBe(RecordFlag.buckets);
    expect(c.CTSTORM_F_CHAIN).toBe(RecordFlag.chain);
    expect(c.CTSTORM_F_LIFETIME).toBe(RecordFlag.lifetime);
    expect(c.CTSTORM_F_LATE).toBe(RecordFlag.late);
    expect(c.CTSTORM_F_CHAIN_CAPPED).toBe(RecordFlag.chainCapped);
    expect([c.CTSTORM_CTX_UNKNOWN, c.CTSTORM_CTX_TASK, c.CTSTORM_CTX_INTERRUPT, c.CTSTORM_CTX_KERNEL]).toEqual([RecordContext.unknown, RecordContext.task, RecordContext.interrupt, RecordContext.kernel]);
  });

  it('names the health counters as enum ctstorm_health numbers them', () => {
    const slots = Array.from({ length: c.CTSTORM_H_MAX! }, (_, i) => 100 + i);
    expect(healthFromArray(slots, 42)).toEqual({
      unconfirmedFrees: 100 + c.CTSTORM_H_UNCONFIRMED_FREES!,
      untracked: 100 + c.CTSTORM_H_UNTRACKED!,
      netnsOverflow: 100 + c.CTSTORM_H_NETNS_OVERFLOW!,
      unknownStart: 100 + c.CTSTORM_H_UNKNOWN_START!,
      natClashes: 100 + c.CTSTORM_H_NAT_CLASH!,
      neverHashed: 100 + c.CTSTORM_H_NEVER_HASHED!,
      pendingOverflow: 100 + c.CTSTORM_H_PENDING_OVERFLOW!,
      insertUnpaired: 100 + c.CTSTORM_H_INSERT_UNPAIRED!,
      pendingExpired: 100 + c.CTSTORM_H_PENDING_EXPIRED!,
      missedRuns: 42,
    });
  });

  it('shares the chain walk limit and the chain-length bins with the engine and the census', () => {
    expect(c.CTSTORM_MAX_WALK).toBe(MAX_CHAIN_WALK);
    expect(c.CTSTORM_CHAIN_BINS).toBe(CHAIN_BINS);
  });

  it('names every slot of enum ctstorm_health, no more', () => {
    // One name per slot below CTSTORM_H_MAX, plus missedRuns (not a slot).
    expect(Object.keys(healthFromArray([])).length).toBe(c.CTSTORM_H_MAX! + 1);
    expect(healthFromArray([])).toEqual({
      unconfirmedFrees: 0, untracked: 0, netnsOverflow: 0, unknownStart: 0, natClashes: 0,
      neverHashed: 0, pendingOverflow: 0, insertUnpaired: 0, pendingExpired: 0, missedRuns: 0,
    });
  });
});
