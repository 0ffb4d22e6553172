// SPDX-License-Identifier: GPL-2.0
/* ctstorm probe: conntrack inserts and destroys as ring-buffer records, plus
 * exact per-CPU counters that stay right when records are lost.
 *
 * Three attach modes; userspace turns off the other modes' programs before load:
 *   fentry:     fexit __nf_conntrack_hash_insert + fentry nf_conntrack_free
 *   kprobe:     the same functions through kprobe/kretprobe
 *   tracepoint: raw tracepoints kmem_cache_alloc/free on the nf_conntrack
 *               cache, with inserts found by the "sweep" program userspace runs.
 *               Raw, not tp_btf: before ~6.3 the verifier refuses tp_btf reads
 *               of a `const void *` argument (the object), seen on Debian 6.1.
 * Destroy = an entry that was inserted (IPS_CONFIRMED) being freed: every
 * teardown path (timeout, flush, early drop, netns exit) ends there exactly once,
 * and entries that never made it into the table (clash losers) are not counted. */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ctstorm.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace between open and load. */
const volatile __u32 conntrack_obj_size = 0; /* 0: take it from BTF */

struct live_entry {
	__u64 start_ns; /* insert time (allocation time in tracepoint mode) */
	/* Tracepoint mode: start_ns while nobody has decided on the insert record;
	 * whoever swaps it to 0 decides (see claim()). 0 from the start in the other
	 * modes, whose hook reports the insert itself. */
	__u64 claim;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by userspace */
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTSTORM_PROTO_SLOTS);
	__type(key, __u32);
	__type(value, struct ctstorm_counts);
} proto_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ctstorm_netns_key);
	__type(value, struct ctstorm_counts);
} netns_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTSTORM_H_MAX);
	__type(key, __u32);
	__type(value, __u64);
} health SEC(".maps");

/* Entries alive now, by kernel address. The address never leaves the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 19); /* resized by userspace from nf_conntrack_max */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct live_entry);
} live SEC(".maps");

/* Tracepoint mode: allocated, not yet reported as inserted. Keyed by address and
 * start time: the slab reuses a freed object at once (early drop frees one entry
 * and allocates the next), and an address alone would let the sweep delete the
 * next occupant's entry while finishing with the previous one's. */
struct pending_key {
	__u64 ct;
	__u64 start_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pending_key);
	__type(value, __u8);
} pending SEC(".maps");

/* kprobe mode: the insert's arguments, from entry to return. */
struct insert_args {
	__u64 ct;
	__u32 hash;
	__u32 reply_hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct insert_args);
} inflight SEC(".maps");

/* The nf_conntrack kmem_cache, learned on first sight (tracepoint mode). */
__u64 conntrack_cache = 0;

static __always_inline void health_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&health, &idx);

	if (v)
		(*v)++;
}

static __always_inline __u32 ct_netns(struct nf_conn *ct)
{
	return BPF_CORE_READ(ct, ct_net.net, ns.inum);
}

/* Bump the exact counters; kind: 0 insert, 1 destroy, 2 lost. */
static __always_inline void count(__u32 netns, __u8 l4proto, int kind)
{
	__u32 slot = l4proto;
	struct ctstorm_netns_key key = { .netns_ino = netns, .l4proto = l4proto };
	struct ctstorm_counts zero = {}, *c;

	c = bpf_map_lookup_elem(&proto_counts, &slot);
	if (c) {
		if (kind == 0) c->inserts++;
		else if (kind == 1) c->destroys++;
		else c->lost++;
	}
	c = bpf_map_lookup_elem(&netns_counts, &key);
	if (!c) {
		bpf_map_update_elem(&netns_counts, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&netns_counts, &key);
	}
	if (!c) {
		health_inc(CTSTORM_H_NETNS_OVERFLOW);
		return;
	}
	if (kind == 0) c->inserts++;
	else if (kind == 1) c->destroys++;
	else c->lost++;
}

static __always_inline void read_tuple(struct ctstorm_tuple *out, struct nf_conntrack_tuple *t)
{
	bpf_core_read(out->src, 16, &t->src.u3);
	bpf_core_read(out->dst, 16, &t->dst.u3);
	bpf_core_read(out->sport, 2, &t->src.u.all);
	bpf_core_read(out->dport, 2, &t->dst.u.all);
}

/* hlist_nulls chains end in an odd marker (bucket << 1 | 1). Follow `next` from a
 * node to the marker: returns the bucket, *after = nodes after this one. */
static __always_inline __u32 walk_forward(__u64 node, __u16 *after)
{
	__u64 next = 0;
	__u16 n = 0;

	for (int i = 0; i < CTSTORM_MAX_WALK; i++) {
		if (bpf_probe_read_kernel(&next, sizeof(next), (void *)node) || !next)
			return (__u32)-1;
		if (next & 1) {
			*after = n;
			return (__u32)(next >> 1);
		}
		node = next;
		n++;
	}
	return (__u32)-1;
}

/* Nodes before this one: `pprev` points at the previous node's `next` (its
 * start) or at the bucket head. A position p is a node when its own pprev q is
 * even and *q == p. */
static __always_inline __u16 walk_back(__u64 node)
{
	__u64 p = 0, q = 0, v = 0;
	__u16 n = 0;

	if (bpf_probe_read_kernel(&p, sizeof(p), (void *)(node + 8)))
		return 0;
	for (int i = 0; i < CTSTORM_MAX_WALK; i++) {
		if (!p || bpf_probe_read_kernel(&q, sizeof(q), (void *)(p + 8)))
			break;
		if (!q || (q & 1) || bpf_probe_read_kernel(&v, sizeof(v), (void *)q) || v != p)
			break;
		n++;
		p = q;
	}
	return n;
}

static __always_inline __u64 node_of(struct nf_conn *ct, int dir)
{
	return (__u64)__builtin_preserve_access_index(&ct->tuplehash[dir].hnnode);
}

/* Bucket and chain length of both directions, found by walking the chains. */
static __always_inline void locate(struct ctstorm_record *r, struct nf_conn *ct, bool whole_chain)
{
	__u16 after_o = 0, after_r = 0;
	__u64 node_o = node_of(ct, 0), node_r = node_of(ct, 1);
	__u32 bo = walk_forward(node_o, &after_o);
	__u32 br = walk_forward(node_r, &after_r);

	if (bo == (__u32)-1 || br == (__u32)-1)
		return;
	r->bucket_orig = bo;
	r->bucket_reply = br;
	r->flags |= CTSTORM_F_BUCKETS;
	if (whole_chain) {
		r->chain_orig = walk_back(node_o) + 1 + after_o;
		r->chain_reply = walk_back(node_r) + 1 + after_r;
		r->flags |= CTSTORM_F_CHAIN;
	}
}

static __always_inline void fill(struct ctstorm_record *r, struct nf_conn *ct, __u8 type,
				 __u32 netns, __u8 l4proto)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->version = CTSTORM_RECORD_VERSION;
	r->type = type;
	r->netns_ino = netns;
	r->l4proto = l4proto;
	r->l3proto = (__u8)BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
	r->status = (__u32)BPF_CORE_READ(ct, status);
	if (bpf_core_field_exists(ct->mark))
		r->mark = BPF_CORE_READ(ct, mark);
	if (bpf_core_field_exists(ct->zone))
		r->zone = BPF_CORE_READ(ct, zone.id);
	if (l4proto == IPPROTO_TCP)
		r->tcp_state = BPF_CORE_READ(ct, proto.tcp.state);
	read_tuple(&r->orig, __builtin_preserve_access_index(&ct->tuplehash[0].tuple));
	read_tuple(&r->reply, __builtin_preserve_access_index(&ct->tuplehash[1].tuple));
}

/* Fill an insert record for ct (already in the table). hash/reply_hash: bucket
 * indexes when the hook knows them, else -1. */
static __always_inline void fill_insert(struct ctstorm_record *r, struct nf_conn *ct, __u32 netns,
					__u8 l4proto, __u64 ts, __u32 hash, __u32 reply_hash,
					__u16 extra_flags)
{
	fill(r, ct, CTSTORM_INSERT, netns, l4proto);
	r->ts_ns = ts;
	r->flags |= extra_flags;
	if (!(extra_flags & CTSTORM_F_LATE))
		locate(r, ct, true);
	if (hash != (__u32)-1) {
		r->bucket_orig = hash;
		r->bucket_reply = reply_hash;
		r->flags |= CTSTORM_F_BUCKETS;
	}
}

static __always_inline void emit_insert(struct nf_conn *ct, __u64 ts, __u32 hash, __u32 reply_hash,
					__u16 extra_flags)
{
	__u32 netns = ct_netns(ct);
	__u8 l4proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
	struct ctstorm_record *r;

	count(netns, l4proto, 0);
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		count(netns, l4proto, 2);
		return;
	}
	fill_insert(r, ct, netns, l4proto, ts, hash, reply_hash, extra_flags);
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void emit_destroy(struct nf_conn *ct, __u64 start_ns)
{
	__u32 netns = ct_netns(ct);
	__u8 l4proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
	__u64 now = bpf_ktime_get_ns();
	struct ctstorm_record *r;

	count(netns, l4proto, 1);
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		count(netns, l4proto, 2);
		return;
	}
	fill(r, ct, CTSTORM_DESTROY, netns, l4proto);
	r->ts_ns = now;
	if (start_ns && start_ns <= now) {
		r->lifetime_ns = now - start_ns;
		r->flags |= CTSTORM_F_LIFETIME;
	}
	/* Unlinked nodes keep `next`, so the bucket is still findable; the chain
	 * length is not (the entry is no longer in it). */
	locate(r, ct, false);
	bpf_ringbuf_submit(r, 0);
}

/* ---- fentry and kprobe modes ------------------------------------------------ */

static __always_inline void on_hash_insert(struct nf_conn *ct, __u32 hash, __u32 reply_hash)
{
	__u64 key = (__u64)ct, now = bpf_ktime_get_ns();
	struct live_entry e = { .start_ns = now };

	if (bpf_map_update_elem(&live, &key, &e, BPF_ANY))
		health_inc(CTSTORM_H_UNTRACKED);
	emit_insert(ct, now, hash, reply_hash, 0);
}

static __always_inline void on_conntrack_free(struct nf_conn *ct)
{
	__u64 key = (__u64)ct;
	struct live_entry *e = bpf_map_lookup_elem(&live, &key);
	__u64 start = e ? e->start_ns : 0;
	__u32 status = BPF_CORE_READ(ct, status);

	if (e)
		bpf_map_delete_elem(&live, &key);
	if (!(status & IPS_CONFIRMED))
		return;
	if (status & IPS_NAT_CLASH) {
		/* nf_ct_resolve_clash_harder put it in the table (reply direction, ~1 s)
		 * without __nf_conntrack_hash_insert: report its insert now, so inserts
		 * and destroys agree with the table count and with tracepoint mode. */
		health_inc(CTSTORM_H_NAT_CLASH);
		if (!e)
			emit_insert(ct, bpf_ktime_get_ns(), (__u32)-1, (__u32)-1, CTSTORM_F_LATE);
	} else if (!e) {
		health_inc(CTSTORM_H_UNKNOWN_START);
	}
	emit_destroy(ct, start);
}

SEC("fexit/__nf_conntrack_hash_insert")
int BPF_PROG(fexit_hash_insert, struct nf_conn *ct, unsigned int hash, unsigned int reply_hash)
{
	on_hash_insert(ct, hash, reply_hash);
	return 0;
}

SEC("fentry/nf_conntrack_free")
int BPF_PROG(fentry_conntrack_free, struct nf_conn *ct)
{
	on_conntrack_free(ct);
	return 0;
}

/* A kprobe sees the arguments before the insert, the kretprobe sees the entry
 * in its chains; the arguments wait in "inflight" in between. */
SEC("kprobe/__nf_conntrack_hash_insert")
int BPF_KPROBE(kprobe_hash_insert, struct nf_conn *ct, unsigned int hash, unsigned int reply_hash)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct insert_args a = { .ct = (__u64)ct, .hash = hash, .reply_hash = reply_hash };

	bpf_map_update_elem(&inflight, &tid, &a, BPF_ANY);
	return 0;
}

SEC("kretprobe/__nf_conntrack_hash_insert")
int BPF_KRETPROBE(kretprobe_hash_insert)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct insert_args *a = bpf_map_lookup_elem(&inflight, &tid);

	if (!a)
		return 0;
	on_hash_insert((struct nf_conn *)a->ct, a->hash, a->reply_hash);
	bpf_map_delete_elem(&inflight, &tid);
	return 0;
}

SEC("kprobe/nf_conntrack_free")
int BPF_KPROBE(kprobe_conntrack_free, struct nf_conn *ct)
{
	on_conntrack_free(ct);
	return 0;
}

/* ---- tracepoint mode -------------------------------------------------------- */

static __always_inline bool is_conntrack_cache(struct kmem_cache *s)
{
	char name[16] = {};
	__u32 want = conntrack_obj_size ? conntrack_obj_size : bpf_core_type_size(struct nf_conn);

	if (conntrack_cache)
		return (__u64)s == conntrack_cache;
	/* Size first: the name is read only for caches of exactly nf_conn's size. */
	if (BPF_CORE_READ(s, object_size) != want)
		return false;
	if (bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(s, name)) != 13)
		return false;
	for (int i = 0; i < 13; i++)
		if (name[i] != "nf_conntrack"[i])
			return false;
	conntrack_cache = (__u64)s;
	return true;
}

SEC("raw_tp/kmem_cache_alloc")
int BPF_PROG(tp_cache_alloc, unsigned long call_site, const void *ptr, struct kmem_cache *s)
{
	__u64 key = (__u64)ptr;
	__u64 now = bpf_ktime_get_ns();
	struct live_entry e = { .start_ns = now, .claim = now };
	struct pending_key pk = { .ct = key, .start_ns = now };
	__u8 one = 1;

	if (!ptr || !is_conntrack_cache(s))
		return 0;
	if (bpf_map_update_elem(&live, &key, &e, BPF_ANY)) {
		health_inc(CTSTORM_H_UNTRACKED);
		return 0; /* its destroy is counted, with an unknown start */
	}
	bpf_map_update_elem(&pending, &pk, &one, BPF_ANY);
	return 0;
}

/* The sweep and the free path race to report an insert; the first to swap the
 * claim from the entry's start time to 0 decides. The slab cache is
 * SLAB_TYPESAFE_BY_RCU and live-map elements are reused, so the sweep may hold
 * an element that now belongs to the address's next occupant: a start time in
 * the swap (not a flag) makes that swap fail. */
static __always_inline bool claim(struct live_entry *e, __u64 start)
{
	return __sync_val_compare_and_swap(&e->claim, start, 0) == start;
}

SEC("raw_tp/kmem_cache_free")
int BPF_PROG(tp_cache_free, unsigned long call_site, const void *ptr, struct kmem_cache *s)
{
	struct nf_conn *ct = (struct nf_conn *)ptr;
	__u64 key = (__u64)ptr, start = 0;
	struct live_entry *e;
	__u32 status;
	bool confirmed;

	if (!ptr || !is_conntrack_cache(s))
		return 0;
	status = BPF_CORE_READ(ct, status);
	confirmed = status & IPS_CONFIRMED;
	if (confirmed && (status & IPS_NAT_CLASH))
		health_inc(CTSTORM_H_NAT_CLASH);
	e = bpf_map_lookup_elem(&live, &key);
	if (e) {
		struct pending_key pk = { .ct = key, .start_ns = e->start_ns };

		start = pk.start_ns;
		/* Claimed even when unconfirmed: a sweep still holding this element
		 * must not report the object's next occupant under it. */
		if (claim(e, start) && confirmed)
			emit_insert(ct, start, (__u32)-1, (__u32)-1, CTSTORM_F_LATE);
		bpf_map_delete_elem(&live, &key);
		bpf_map_delete_elem(&pending, &pk);
	}
	if (!confirmed) {
		health_inc(CTSTORM_H_UNCONFIRMED_FREES);
		return 0;
	}
	if (!e)
		health_inc(CTSTORM_H_UNKNOWN_START);
	emit_destroy(ct, start);
	return 0;
}

static long sweep_one(void *map, struct pending_key *key, __u8 *val, void *unused)
{
	struct pending_key pk = *key;
	struct nf_conn *ct = (struct nf_conn *)pk.ct;
	__u64 start = pk.start_ns;
	struct live_entry *e = bpf_map_lookup_elem(&live, &pk.ct);
	struct ctstorm_record *r;
	__u32 netns;
	__u8 l4proto;

	if (!e || e->start_ns != start) {
		/* Its object was freed meanwhile, and the free path decided. The key
		 * is this occupant's alone, so deleting it cannot hide the next one. */
		bpf_map_delete_elem(&pending, &pk);
		return 0;
	}
	if (!(BPF_CORE_READ(ct, status) & IPS_CONFIRMED))
		return 0; /* not in the table yet: look again next sweep */
	/* Read first, then claim: the free path claims before the object is freed,
	 * so a won claim means what was read was still this entry; a lost one means
	 * it was freed meanwhile and the free path decided. */
	netns = ct_netns(ct);
	l4proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		if (claim(e, start)) {
			count(netns, l4proto, 0);
			count(netns, l4proto, 2);
		}
	} else {
		fill_insert(r, ct, netns, l4proto, start, (__u32)-1, (__u32)-1, 0);
		if (claim(e, start)) {
			bpf_ringbuf_submit(r, 0);
			count(netns, l4proto, 0);
		} else {
			bpf_ringbuf_discard(r, 0);
		}
	}
	bpf_map_delete_elem(&pending, &pk);
	return 0;
}

/* Never attached: userspace runs it with BPF_PROG_TEST_RUN before each drain, so
 * confirmed entries are reported within one poll interval of their insert. */
SEC("raw_tp")
int sweep(void *ctx)
{
	bpf_for_each_map_elem(&pending, sweep_one, NULL, 0);
	return 0;
}
