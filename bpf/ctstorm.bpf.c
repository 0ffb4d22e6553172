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
 * Destroy = an entry that was in the table being freed (was_hashed): every
 * teardown path (timeout, flush, early drop, netns exit) ends there exactly once,
 * and entries that never made it into the table (clash losers, ctnetlink creates
 * that failed) are not counted. */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ctstorm.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace between open and load: chain steps followed at most per
 * direction, up to CTSTORM_MAX_WALK (0: that).
 * Tests lower it to drive the capped path: a real table cannot grow chains past
 * the walk on kernels that limit them. */
const volatile __u32 chain_walk_limit = 0;

static __always_inline bool walk_done(int i)
{
	return chain_walk_limit && i >= (int)chain_walk_limit;
}

/* live_entry.state: the start time while nobody has reported the insert
 * (tracepoint mode), 0 once the free path reported it, or REPORTED with the
 * entry's buckets once its insert hook or the sweep did. */
#define REPORTED (1ULL << 63)
#define BUCKETS_KNOWN (1ULL << 62)
#define BUCKET_BITS 31
#define BUCKET_MASK ((1ULL << BUCKET_BITS) - 1)

struct live_entry {
	__u64 start_ns; /* insert time (allocation time in tracepoint mode) */
	__u64 state;    /* see REPORTED; swapped atomically (claim()) */
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
	__uint(max_entries, 16384); /* resized by userspace */
	/* Rows cost memory on every possible CPU: allocate only the ones used
	 * (userspace deletes those of namespaces that are gone). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
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

/* Tracepoint mode: allocated, not yet reported as inserted, in allocation
 * order. A queue, so a sweep costs what it finds (a hash map's iteration visits
 * every bucket of its capacity: 256 us a run at 65,536). Each item names its
 * object by address and start time: the slab reuses a freed object at once
 * (early drop frees one entry and allocates the next), and an address alone
 * would let the sweep report the next occupant while finishing the previous
 * one's. A freed object's item stays until a sweep pops and drops it. */
struct task_info {
	__u8 context; /* enum ctstorm_context */
	__u32 tgid;
	__u64 cgroup_id;
	char comm[16];
};

struct pending_item {
	__u64 ct;
	__u64 start_ns;
	__u64 queued_ns; /* when (re)queued: a sweep stops at items queued after it began */
	struct task_info task; /* who allocated it: the context its insert happens in */
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1 << 16); /* resized by userspace */
	__type(value, struct pending_item);
} pending SEC(".maps");

/* kprobe mode: the insert's arguments, from entry to return, one slot per CPU.
 * __nf_conntrack_hash_insert runs with bottom halves off under the bucket locks,
 * so nothing else inserts on this CPU in between (a pid key would not do:
 * softirqs on idle CPUs all run as pid 0). */
struct insert_args {
	__u64 ct;
	__u64 ts;
	__u32 hash;
	__u32 reply_hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct insert_args);
} inflight SEC(".maps");

/* The nf_conntrack kmem_cache, learned on first sight (tracepoint mode). */
__u64 conntrack_cache = 0;
/* kprobe mode: when userspace had attached both halves of the insert hook. A call
 * in flight while the kretprobe was being attached leaves its slot full without
 * having been missed: such a slot (filled before this time) is not a miss. */
__u64 armed_ns = 0;

/* Per-CPU values, yet atomic: another of these programs can run nested on the
 * same CPU (an IRQ whose exit runs NET_RX in the middle of a free). */
static __always_inline void add(__u64 *v)
{
	__sync_fetch_and_add(v, 1);
}

static __always_inline void health_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&health, &idx);

	if (v)
		add(v);
}

/* Whether each CPU serves a softirq now, from the softirq_entry/exit
 * tracepoints (which bracket every softirq handler, in irq exit, in
 * local_bh_enable and in ksoftirqd alike), and in which task: a softirq runs on
 * top of the task it interrupted, and on PREEMPT_RT it can itself be preempted
 * by another task, which is then not in it. SOFTIRQ_UNSEEN: none ended on this
 * CPU since they were hooked; one begun before is over by softirq_hooked_ns +
 * CTSTORM_SOFTIRQ_GRACE_NS (a handler runs for milliseconds), and userspace
 * waits that long before it hooks conntrack. Why not the preempt count: x86
 * keeps it in a per-CPU variable, and a typed ksym needs CONFIG_KALLSYMS_ALL
 * (this machine's 6.18 has none) and per-CPU variables in BTF (Debian's 5.10
 * has none). */
enum softirq_state { SOFTIRQ_UNSEEN = 0, SOFTIRQ_IN = 1, SOFTIRQ_OUT = 2 };

struct softirq_cpu {
	__u32 state; /* enum softirq_state */
	__u32 pad;
	__u64 task;  /* the task it runs in, while SOFTIRQ_IN */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct softirq_cpu);
} softirq SEC(".maps");

/* Set by userspace once both softirq programs are attached. */
__u64 softirq_hooked_ns = 0;

SEC("raw_tp/softirq_entry")
int BPF_PROG(tp_softirq_entry)
{
	__u32 zero = 0;
	struct softirq_cpu *s = bpf_map_lookup_elem(&softirq, &zero);

	if (s) {
		s->task = bpf_get_current_task();
		s->state = SOFTIRQ_IN;
	}
	return 0;
}

SEC("raw_tp/softirq_exit")
int BPF_PROG(tp_softirq_exit)
{
	__u32 zero = 0;
	struct softirq_cpu *s = bpf_map_lookup_elem(&softirq, &zero);

	if (s)
		s->state = SOFTIRQ_OUT;
	return 0;
}

#define PF_KTHREAD 0x00200000

/* Who runs now: a process is named only when the CPU runs it, never the task a
 * softirq happened to interrupt; a kernel thread (threaded NAPI, a kworker, a
 * vhost worker before 6.4) is said to be one. Conntrack never runs in hardirq
 * or NMI. */
static __always_inline void current_task_info(struct task_info *t)
{
	__u32 zero = 0;
	struct softirq_cpu *s = bpf_map_lookup_elem(&softirq, &zero);
	__u64 hooked = softirq_hooked_ns, task = bpf_get_current_task();

	if (!s || !hooked || (s->state == SOFTIRQ_UNSEEN && bpf_ktime_get_ns() < hooked + CTSTORM_SOFTIRQ_GRACE_NS)) {
		t->context = CTSTORM_CTX_UNKNOWN;
		return;
	}
	if (s->state == SOFTIRQ_IN && s->task == task) {
		t->context = CTSTORM_CTX_INTERRUPT;
		return;
	}
	t->context = (BPF_CORE_READ((struct task_struct *)task, flags) & PF_KTHREAD) ? CTSTORM_CTX_KERNEL : CTSTORM_CTX_TASK;
	t->tgid = bpf_get_current_pid_tgid() >> 32;
	t->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(t->comm, sizeof(t->comm));
}

static __always_inline void set_task(struct ctstorm_record *r, const struct task_info *t)
{
	r->context = t->context;
	if (t->context != CTSTORM_CTX_TASK && t->context != CTSTORM_CTX_KERNEL)
		return;
	r->tgid = t->tgid;
	r->cgroup_id = t->cgroup_id;
	__builtin_memcpy(r->comm, t->comm, sizeof(r->comm));
}

/* Whether a value read from kernel memory can be a kernel address: the top byte
 * of every kernel address is 0xff on x86-64 (4- and 5-level paging) and arm64.
 * Poison (0xdead...), saved hashes, markers and garbage fail it, and are never
 * dereferenced: a non-canonical read faults as #GP, which older kernels (5.10)
 * report with a WARN from the exception handler. */
static __always_inline bool kernel_ptr(__u64 p)
{
	return (p >> 56) == 0xff;
}

struct netns_id {
	__u64 cookie;
	__u32 ino;
};

/* A field of the entry: a direct load where `ct` is a typed (BTF) pointer, as in
 * fentry/fexit programs, else a bpf_probe_read_kernel (kprobe and tracepoint
 * programs hold it as a plain number). `typed` is a constant at every call site,
 * so each program keeps one of the two; a direct load costs a load, a probe read
 * a helper call (under QEMU TCG, most of the hooks' time). */
#define CT_READ(typed, ct, field) ((typed) ? (ct)->field : BPF_CORE_READ(ct, field))

/* The netns of a struct net read as a plain number (kprobe and tracepoint paths). */
static __always_inline struct netns_id net_id(__u64 addr)
{
	struct netns_id id = {};
	struct net *net = (struct net *)addr;

	if (!kernel_ptr(addr))
		return id;
	id.ino = BPF_CORE_READ(net, ns.inum);
	if (bpf_core_field_exists(net->net_cookie))
		id.cookie = BPF_CORE_READ(net, net_cookie);
	return id;
}

enum count_kind { COUNT_INSERT, COUNT_DESTROY, COUNT_LOST };

static __always_inline void bump(struct ctstorm_counts *c, enum count_kind kind)
{
	if (kind == COUNT_INSERT)
		add(&c->inserts);
	else if (kind == COUNT_DESTROY)
		add(&c->destroys);
	else
		add(&c->lost);
}

static __always_inline void count(struct netns_id ns, __u8 l4proto, enum count_kind kind)
{
	__u32 slot = l4proto;
	struct ctstorm_netns_key key = { .netns_cookie = ns.cookie, .netns_ino = ns.ino, .l4proto = l4proto };
	struct ctstorm_counts zero = {}, *c;

	c = bpf_map_lookup_elem(&proto_counts, &slot);
	if (c)
		bump(c, kind);
	c = bpf_map_lookup_elem(&netns_counts, &key);
	if (!c) {
		bpf_map_update_elem(&netns_counts, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&netns_counts, &key);
	}
	if (!c) {
		health_inc(CTSTORM_H_NETNS_OVERFLOW);
		return;
	}
	bump(c, kind);
}

/* An entry's two tuple hashes (its chain node and tuple per direction) as the
 * kernel has laid them out since 2.6, without CO-RE: 112 bytes the probe reads
 * in one helper call where field by field took fourteen. */
struct raw_hash {
	__u64 next;  /* hnnode.next */
	__u64 pprev; /* hnnode.pprev */
	__u8 src[16];
	__u8 sport[2];
	__u16 l3num;
	__u8 dst[16];
	__u8 dport[2];
	__u8 protonum;
	__u8 dir;
};

/* Whether the running kernel's BTF has that layout: a constant once CO-RE has
 * relocated it, so the verifier keeps one of read_hashes' two paths. */
static __always_inline bool raw_hash_layout(void)
{
	return bpf_core_type_size(struct nf_conntrack_tuple_hash) == sizeof(struct raw_hash) &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, hnnode.pprev) == 8 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.src.u3) == 16 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.src.u) == 32 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.src.l3num) == 34 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.dst.u3) == 36 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.dst.u) == 52 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.dst.protonum) == 54 &&
	       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple.dst.dir) == 55;
}

static __always_inline void read_hash(struct raw_hash *h, struct nf_conntrack_tuple_hash *t)
{
	h->next = (__u64)BPF_CORE_READ(t, hnnode.next);
	h->pprev = (__u64)BPF_CORE_READ(t, hnnode.pprev);
	bpf_core_read(h->src, 16, &t->tuple.src.u3);
	bpf_core_read(h->sport, 2, &t->tuple.src.u.all);
	h->l3num = BPF_CORE_READ(t, tuple.src.l3num);
	bpf_core_read(h->dst, 16, &t->tuple.dst.u3);
	bpf_core_read(h->dport, 2, &t->tuple.dst.u.all);
	h->protonum = BPF_CORE_READ(t, tuple.dst.protonum);
}

/* Both directions, as they are now. A failed read leaves zeros: a next and a
 * pprev of 0 end every walk, and a zero tuple is what the record had before. */
static __always_inline void read_hashes(struct raw_hash *h, struct nf_conn *ct)
{
	if (raw_hash_layout()) {
		if (bpf_core_read(h, 2 * sizeof(*h), &ct->tuplehash))
			__builtin_memset(h, 0, 2 * sizeof(*h));
		return;
	}
	__builtin_memset(h, 0, 2 * sizeof(*h));
	read_hash(&h[0], __builtin_preserve_access_index(&ct->tuplehash[0]));
	read_hash(&h[1], __builtin_preserve_access_index(&ct->tuplehash[1]));
}

/* What a record takes from an entry: its tuple hashes, then status and ct_net,
 * which follow them since 5.19 (128 bytes, one read where the BTF agrees, as
 * read_hashes). Before, a u16 cpu sat between status and ct_net (Debian 5.10):
 * the tuple hashes are one read there, status and ct_net two more. */
struct raw_entry {
	struct raw_hash h[2];
	__u64 status;
	__u64 net;
};

static __always_inline bool raw_entry_layout(void)
{
	__u32 hashes = bpf_core_field_offset(struct nf_conn, tuplehash);

	return raw_hash_layout() && bpf_core_field_offset(struct nf_conn, status) == hashes + 112 &&
	       bpf_core_field_size(struct nf_conn, status) == 8 &&
	       bpf_core_field_offset(struct nf_conn, ct_net) == hashes + 120 &&
	       bpf_core_field_size(struct nf_conn, ct_net) == 8; /* empty without CONFIG_NET_NS */
}

static __always_inline void read_entry(struct raw_entry *e, struct nf_conn *ct)
{
	if (raw_entry_layout()) {
		if (bpf_core_read(e, sizeof(*e), &ct->tuplehash))
			__builtin_memset(e, 0, sizeof(*e));
		return;
	}
	read_hashes(e->h, ct);
	e->status = BPF_CORE_READ(ct, status);
	e->net = (__u64)BPF_CORE_READ(ct, ct_net.net);
}

/* The entry's netns: direct loads where `ct` is typed, else from the copy. */
static __always_inline struct netns_id entry_netns(struct nf_conn *ct, const struct raw_entry *e, bool typed)
{
	struct netns_id id = {};
	struct net *net;

	if (!typed)
		return net_id(e->net);
	net = ct->ct_net.net;
	/* Required, not defensive: on kernels whose BTF tags the field __rcu the
	 * verifier types it maybe-NULL and refuses the loads below without it. */
	if (!net)
		return id;
	id.ino = net->ns.inum;
	if (bpf_core_field_exists(net->net_cookie))
		id.cookie = net->net_cookie;
	return id;
}

static __always_inline __u64 node_of(struct nf_conn *ct, int dir)
{
	return (__u64)__builtin_preserve_access_index(&ct->tuplehash[dir].hnnode);
}

/* Whether the entry was ever in the table, read at free time. __nf_conntrack_alloc
 * parks the 32-bit hash in the reply node's pprev; hashing makes it a pointer and
 * unlinking poisons it (LIST_POISON2): both above 32 bits. IPS_CONFIRMED alone is
 * not enough: ctnetlink and bpf_ct_insert_entry set it before steps that can still
 * fail, and older kernels free clash losers with it set. */
static __always_inline bool was_hashed(struct nf_conn *ct)
{
	__u64 pprev = (__u64)BPF_CORE_READ(ct, tuplehash[1].hnnode.pprev);

	/* LIST_POISON2 is 0x122 + CONFIG_ILLEGAL_POINTER_VALUE, 0xdead000000000122 on
	 * x86-64 and arm64 (the architectures ctstorm builds for). Not read from the
	 * kernel config: libbpf refuses to load when it finds none (containers). */
	return pprev >> 32;
}

/* Whether the reply node is in a chain right now: its pprev points at a slot that
 * holds the node's address. An object the slab just handed out still holds its
 * previous occupant's fields (SLAB_TYPESAFE_BY_RCU: a saved hash or poison there),
 * and a fresh slab page holds garbage; neither passes. */
static __always_inline bool reply_linked(struct nf_conn *ct)
{
	__u64 node = node_of(ct, 1), pprev = 0, back = 0;

	if (bpf_probe_read_kernel(&pprev, sizeof(pprev), (void *)(node + 8)))
		return false;
	if (!kernel_ptr(pprev) || (pprev & 7))
		return false;
	if (bpf_probe_read_kernel(&back, sizeof(back), (void *)pprev))
		return false;
	return back == node;
}

struct walk {
	__u32 bucket; /* (__u32)-1 when the walk did not reach the end marker */
	__u16 nodes;  /* nodes passed */
	bool capped;  /* stopped at the walk limit */
};

/* The walks are global functions: the verifier checks each once, on its own.
 * Inlined, every way out of one walk multiplied the paths through the next ones
 * (four walks of 96 steps), past what 6.1's verifier accepts. They return a walk
 * packed as bucket | nodes << 32 | capped << 48. */
#define WALK_NODES_SHIFT 32
#define WALK_CAPPED (1ULL << 48)

static __always_inline struct walk unpack_walk(__u64 v)
{
	struct walk w = {
		.bucket = (__u32)v,
		.nodes = (__u16)(v >> WALK_NODES_SHIFT),
		.capped = (v & WALK_CAPPED) != 0,
	};
	return w;
}

/* hlist_nulls chains end in an odd marker (bucket << 1 | 1). Follow the chain
 * from a node's `next` value to the marker. Arguments are values read from the
 * node, not its address: a global function takes scalars only. */
__noinline __u64 chain_forward(__u64 next)
{
	__u64 nodes = 0;

	for (int i = 0; i < CTSTORM_MAX_WALK; i++) {
		if (!next)
			return (__u32)-1 | nodes << WALK_NODES_SHIFT;
		if (next & 1)
			return (__u32)(next >> 1) | nodes << WALK_NODES_SHIFT;
		if (walk_done(i))
			break;
		nodes++;
		if (!kernel_ptr(next) || bpf_probe_read_kernel(&next, sizeof(next), (void *)next))
			return (__u32)-1 | nodes << WALK_NODES_SHIFT;
	}
	return (__u32)-1 | nodes << WALK_NODES_SHIFT | WALK_CAPPED;
}

/* Nodes before this one, from its `pprev` value: pprev points at the previous
 * node's `next` (its start) or at the bucket head. A position p is a node when
 * its own pprev q is even and *q == p. */
__noinline __u64 chain_back(__u64 p)
{
	__u64 q = 0, v = 0, nodes = 0;

	for (int i = 0; i < CTSTORM_MAX_WALK; i++) {
		if (!kernel_ptr(p) || bpf_probe_read_kernel(&q, sizeof(q), (void *)(p + 8)))
			return (__u32)-1 | nodes << WALK_NODES_SHIFT;
		if (!kernel_ptr(q) || (q & 7) || bpf_probe_read_kernel(&v, sizeof(v), (void *)q) || v != p)
			return (__u32)-1 | nodes << WALK_NODES_SHIFT;
		if (walk_done(i))
			break;
		nodes++;
		p = q;
	}
	return (__u32)-1 | nodes << WALK_NODES_SHIFT | WALK_CAPPED;
}

/* Address of the conntrack hash array (nf_conntrack_hash), learned from inserts,
 * for the census. An entry first in its chain has its pprev pointing at its
 * bucket's head, and the array starts bucket heads (8 bytes each) before that.
 * Written only when it changes (a resize makes a new array). */
__u64 table_base = 0;

static __always_inline void learn_table(const struct ctstorm_record *r, struct nf_conn *ct,
					const struct raw_hash h[2], struct walk bo, struct walk br)
{
	__u64 po = h[0].pprev, pr = h[1].pprev;
	__u64 base = po - 8 * (__u64)r->bucket_orig, head = 0;

	/* Both nodes first in their chains, both giving one array: in tracepoint
	 * mode, which holds no bucket lock, a chain changing under the walk could
	 * make one of them look first. */
	if (!(r->flags & CTSTORM_F_BUCKETS) || bo.nodes || bo.capped || br.nodes || br.capped)
		return;
	if (!kernel_ptr(po) || (po & 7) || pr - 8 * (__u64)r->bucket_reply != base)
		return;
	/* Known already: nothing to check or write (the common case). */
	if (base == table_base)
		return;
	/* And each head holds its node right now (read again: the walk's reads were
	 * earlier, and in tracepoint mode the object may have been reused since). */
	if (bpf_probe_read_kernel(&head, sizeof(head), (void *)po) || head != node_of(ct, 0))
		return;
	if (bpf_probe_read_kernel(&head, sizeof(head), (void *)pr) || head != node_of(ct, 1))
		return;
	if (table_base != base)
		table_base = base;
}

/* Bucket and chain length of both directions of an entry in its chains.
 * A hash passed in means the insert hook, which runs under both bucket locks
 * right after hlist_nulls_add_head_rcu: each node is first in its chain, with
 * nothing before it to walk back over. The sweep (tracepoint mode) holds no
 * lock and runs later: entries inserted since may come first. Buckets the hook
 * passed win over the walk's. */
static __always_inline void locate(struct ctstorm_record *r, struct nf_conn *ct, const struct raw_hash h[2],
				   __u32 hash, __u32 reply_hash)
{
	struct walk fo = unpack_walk(chain_forward(h[0].next));
	struct walk fr = unpack_walk(chain_forward(h[1].next));
	struct walk bo = {}, br = {};

	if (hash == (__u32)-1) {
		bo = unpack_walk(chain_back(h[0].pprev));
		br = unpack_walk(chain_back(h[1].pprev));
	} else {
		/* Both in one bucket: the reply node, added last, is before the original. */
		bo.nodes = hash == reply_hash;
	}
	if (hash != (__u32)-1) {
		r->bucket_orig = hash;
		r->bucket_reply = reply_hash;
		r->flags |= CTSTORM_F_BUCKETS;
	} else if (fo.bucket != (__u32)-1 && fr.bucket != (__u32)-1) {
		r->bucket_orig = fo.bucket;
		r->bucket_reply = fr.bucket;
		r->flags |= CTSTORM_F_BUCKETS;
	}
	/* A forward walk that met neither the end marker nor the walk limit was cut
	 * short (a read failed, or in tracepoint mode, which holds no bucket lock,
	 * the chain changed under it): no length then. */
	if ((fo.bucket == (__u32)-1 && !fo.capped) || (fr.bucket == (__u32)-1 && !fr.capped))
		return;
	learn_table(r, ct, h, bo, br);
	r->chain_orig = bo.nodes + 1 + fo.nodes;
	r->chain_reply = br.nodes + 1 + fr.nodes;
	r->flags |= CTSTORM_F_CHAIN;
	if (fo.capped || fr.capped || bo.capped || br.capped)
		r->flags |= CTSTORM_F_CHAIN_CAPPED;
}

static __always_inline __u64 pack_buckets(const struct ctstorm_record *r)
{
	if (!(r->flags & CTSTORM_F_BUCKETS))
		return REPORTED;
	return REPORTED | BUCKETS_KNOWN | ((__u64)(r->bucket_orig & BUCKET_MASK) << BUCKET_BITS) |
	       (r->bucket_reply & BUCKET_MASK);
}

static __always_inline void copy_tuple(struct ctstorm_tuple *out, const struct raw_hash *h)
{
	__builtin_memcpy(out->src, h->src, 16);
	__builtin_memcpy(out->dst, h->dst, 16);
	__builtin_memcpy(out->sport, h->sport, 2);
	__builtin_memcpy(out->dport, h->dport, 2);
}

static __always_inline void fill(struct ctstorm_record *r, struct nf_conn *ct, const struct raw_entry *e,
				 __u8 type, struct netns_id ns, bool typed)
{
	const struct raw_hash *h = e->h;
	__u8 l4proto = h[0].protonum;

	__builtin_memset(r, 0, sizeof(*r));
	r->version = CTSTORM_RECORD_VERSION;
	r->type = type;
	r->netns_ino = ns.ino;
	r->netns_cookie = ns.cookie;
	r->l4proto = l4proto;
	r->l3proto = (__u8)h[0].l3num;
	r->status = (__u32)e->status;
	if (bpf_core_field_exists(ct->mark))
		r->mark = CT_READ(typed, ct, mark);
	if (bpf_core_field_exists(ct->zone))
		r->zone = CT_READ(typed, ct, zone.id);
	if (l4proto == IPPROTO_TCP)
		r->tcp_state = CT_READ(typed, ct, proto.tcp.state);
	copy_tuple(&r->orig, &h[0]);
	copy_tuple(&r->reply, &h[1]);
}

/* Counts and reports an insert. Hooked at the insert itself, the entry is in its
 * chains (locate); seen only when freed (late), it is not. Returns the state to
 * keep in its live entry: its buckets. */
static __always_inline __u64 emit_insert(struct nf_conn *ct, __u64 ts, __u32 hash, __u32 reply_hash,
					 bool late, bool typed, const struct task_info *task)
{
	struct ctstorm_record *r;
	__u64 state = REPORTED;
	struct raw_entry e;
	struct netns_id ns;
	__u8 l4proto;

	read_entry(&e, ct);
	ns = entry_netns(ct, &e, typed);
	l4proto = e.h[0].protonum;

	count(ns, l4proto, COUNT_INSERT);
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		count(ns, l4proto, COUNT_LOST);
		if (hash != (__u32)-1)
			state |= BUCKETS_KNOWN | ((__u64)(hash & BUCKET_MASK) << BUCKET_BITS) |
				 (reply_hash & BUCKET_MASK);
		return state;
	}
	fill(r, ct, &e, CTSTORM_INSERT, ns, typed);
	/* Kernels with the 2025 clash fix set IPS_CONFIRMED only after the hash
	 * insert returns: the record says what the entry is, confirmed. */
	r->status |= IPS_CONFIRMED;
	r->ts_ns = ts;
	if (task)
		set_task(r, task);
	if (late)
		r->flags |= CTSTORM_F_LATE;
	else
		locate(r, ct, e.h, hash, reply_hash);
	state = pack_buckets(r);
	bpf_ringbuf_submit(r, 0);
	return state;
}

/* state: the live entry's (REPORTED with buckets), or 0 when they are unknown.
 * Buckets come from the insert: walking from a node already unlinked would read
 * a chain it has left (or a dying list's marker on older kernels). */
static __always_inline void emit_destroy(struct nf_conn *ct, __u64 start_ns, __u64 state, bool typed)
{
	__u64 now = bpf_ktime_get_ns();
	struct ctstorm_record *r;
	struct raw_entry e;
	struct netns_id ns;
	__u8 l4proto;

	read_entry(&e, ct);
	ns = entry_netns(ct, &e, typed);
	l4proto = e.h[0].protonum;

	count(ns, l4proto, COUNT_DESTROY);
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		count(ns, l4proto, COUNT_LOST);
		return;
	}
	fill(r, ct, &e, CTSTORM_DESTROY, ns, typed);
	r->ts_ns = now;
	if (start_ns && start_ns <= now) {
		r->lifetime_ns = now - start_ns;
		r->flags |= CTSTORM_F_LIFETIME;
	}
	if ((state & REPORTED) && (state & BUCKETS_KNOWN)) {
		r->bucket_orig = (state >> BUCKET_BITS) & BUCKET_MASK;
		r->bucket_reply = state & BUCKET_MASK;
		r->flags |= CTSTORM_F_BUCKETS;
	}
	bpf_ringbuf_submit(r, 0);
}

/* ---- fentry and kprobe modes ------------------------------------------------ */

static __always_inline void on_hash_insert(struct nf_conn *ct, __u32 hash, __u32 reply_hash, bool typed)
{
	__u64 key = (__u64)ct, now = bpf_ktime_get_ns();
	struct live_entry e = { .start_ns = now };
	struct task_info task = {};

	/* The insert runs where the entry's first packet is processed: in the
	 * sending process for a local flow, in softirq for one received. */
	current_task_info(&task);
	e.state = emit_insert(ct, now, hash, reply_hash, false, typed, &task);
	if (bpf_map_update_elem(&live, &key, &e, BPF_ANY))
		health_inc(CTSTORM_H_UNTRACKED);
}

static __always_inline void on_conntrack_free(struct nf_conn *ct, bool typed)
{
	__u64 key = (__u64)ct, start = 0, state = 0;
	struct live_entry *e = bpf_map_lookup_elem(&live, &key);
	__u32 status = CT_READ(typed, ct, status);
	bool known = e;

	if (e) {
		start = e->start_ns;
		state = e->state;
		bpf_map_delete_elem(&live, &key);
	}
	if (!was_hashed(ct)) {
		if (status & IPS_CONFIRMED)
			health_inc(CTSTORM_H_NEVER_HASHED);
		return;
	}
	if (status & IPS_NAT_CLASH) {
		/* nf_ct_resolve_clash_harder put it in the table (reply direction, ~1 s)
		 * without __nf_conntrack_hash_insert: report its insert now, so inserts
		 * and destroys agree with the table count and with tracepoint mode. */
		health_inc(CTSTORM_H_NAT_CLASH);
		if (!known)
			emit_insert(ct, bpf_ktime_get_ns(), (__u32)-1, (__u32)-1, true, typed, NULL);
	} else if (!known) {
		health_inc(CTSTORM_H_UNKNOWN_START);
	}
	emit_destroy(ct, start, state, typed);
}

SEC("fexit/__nf_conntrack_hash_insert")
int BPF_PROG(fexit_hash_insert, struct nf_conn *ct, unsigned int hash, unsigned int reply_hash)
{
	on_hash_insert(ct, hash, reply_hash, true);
	return 0;
}

SEC("fentry/nf_conntrack_free")
int BPF_PROG(fentry_conntrack_free, struct nf_conn *ct)
{
	on_conntrack_free(ct, true);
	return 0;
}

/* A kprobe sees the arguments before the insert, the kretprobe sees the entry
 * in its chains; the arguments wait in this CPU's "inflight" slot in between.
 * A slot found full, or empty at return, means the kernel skipped one of the
 * pair (recursion or no kretprobe instance): counted, never guessed. */
SEC("kprobe/__nf_conntrack_hash_insert")
int BPF_KPROBE(kprobe_hash_insert, struct nf_conn *ct, unsigned int hash, unsigned int reply_hash)
{
	__u32 zero = 0;
	struct insert_args *a = bpf_map_lookup_elem(&inflight, &zero);

	if (!a)
		return 0;
	if (a->ct && armed_ns && a->ts >= armed_ns)
		health_inc(CTSTORM_H_INSERT_UNPAIRED);
	a->ct = (__u64)ct;
	a->ts = bpf_ktime_get_ns();
	a->hash = hash;
	a->reply_hash = reply_hash;
	return 0;
}

SEC("kretprobe/__nf_conntrack_hash_insert")
int BPF_KRETPROBE(kretprobe_hash_insert)
{
	__u32 zero = 0;
	struct insert_args *a = bpf_map_lookup_elem(&inflight, &zero);
	__u64 ct;

	if (!a)
		return 0;
	ct = a->ct;
	if (!ct) {
		health_inc(CTSTORM_H_INSERT_UNPAIRED);
		return 0;
	}
	a->ct = 0;
	on_hash_insert((struct nf_conn *)ct, a->hash, a->reply_hash, false);
	return 0;
}

SEC("kprobe/nf_conntrack_free")
int BPF_KPROBE(kprobe_conntrack_free, struct nf_conn *ct)
{
	on_conntrack_free(ct, false);
	return 0;
}

/* ---- tracepoint mode -------------------------------------------------------- */

static __always_inline bool is_conntrack_cache(struct kmem_cache *s)
{
	char name[16] = {};
	__u32 want = bpf_core_type_size(struct nf_conn);

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
	__u64 key = (__u64)ptr, now;
	struct live_entry e;
	struct pending_item item;

	/* Every slab allocation of the system comes here: leave at once for the
	 * caches ignored, before any helper call. */
	if (!ptr || !is_conntrack_cache(s))
		return 0;
	now = bpf_ktime_get_ns();
	e = (struct live_entry){ .start_ns = now, .state = now };
	if (bpf_map_update_elem(&live, &key, &e, BPF_ANY)) {
		/* Its insert is never seen and its destroy counts with an unknown
		 * start: the counts are no longer exact, and health says so. */
		health_inc(CTSTORM_H_UNTRACKED);
		return 0;
	}
	/* Without a queued item the sweep never looks at it; the free path still
	 * reports its insert, late. */
	item = (struct pending_item){ .ct = key, .start_ns = now, .queued_ns = now };
	/* Allocated where its first packet is processed, as it is inserted. */
	current_task_info(&item.task);
	if (bpf_map_push_elem(&pending, &item, 0))
		health_inc(CTSTORM_H_PENDING_OVERFLOW);
	return 0;
}

/* The sweep and the free path race to report an insert; the first to swap the
 * state from the entry's start time decides. The slab cache is
 * SLAB_TYPESAFE_BY_RCU and live-map elements are reused, so the sweep may hold
 * an element that now belongs to the address's next occupant: a start time in
 * the swap (not a flag) makes that swap fail. Returns the value found. */
static __always_inline __u64 claim(struct live_entry *e, __u64 start, __u64 to)
{
	return __sync_val_compare_and_swap(&e->state, start, to);
}

SEC("raw_tp/kmem_cache_free")
int BPF_PROG(tp_cache_free, unsigned long call_site, const void *ptr, struct kmem_cache *s)
{
	struct nf_conn *ct = (struct nf_conn *)ptr;
	__u64 key = (__u64)ptr, start = 0, state = 0;
	struct live_entry *e;
	__u32 status;
	bool hashed;

	if (!ptr || !is_conntrack_cache(s))
		return 0;
	status = BPF_CORE_READ(ct, status);
	hashed = was_hashed(ct);
	e = bpf_map_lookup_elem(&live, &key);
	if (e) {
		start = e->start_ns;
		/* Claimed even when never hashed: a sweep still holding this element
		 * must not report the object's next occupant under it. */
		state = claim(e, start, 0);
		if (state == start) {
			state = 0;
			if (hashed)
				state = emit_insert(ct, start, (__u32)-1, (__u32)-1, true, false, NULL);
		}
		bpf_map_delete_elem(&live, &key);
	}
	if (!hashed) {
		health_inc((status & IPS_CONFIRMED) ? CTSTORM_H_NEVER_HASHED : CTSTORM_H_UNCONFIRMED_FREES);
		return 0;
	}
	if (status & IPS_NAT_CLASH)
		health_inc(CTSTORM_H_NAT_CLASH);
	if (!e)
		health_inc(CTSTORM_H_UNKNOWN_START);
	emit_destroy(ct, start, state, false);
	return 0;
}

/* Reports one queued insert if its entry is in the table now. Returns true when
 * the item must wait for a later sweep (allocated, not yet confirmed). */
static __always_inline bool sweep_item(const struct pending_item *item)
{
	struct nf_conn *ct = (struct nf_conn *)item->ct;
	__u64 start = item->start_ns, state;
	struct live_entry *e = bpf_map_lookup_elem(&live, &item->ct);
	struct ctstorm_record *r;
	struct raw_entry c;
	struct netns_id ns;
	__u8 l4proto;

	if (!e || e->start_ns != start)
		return false; /* its object was freed meanwhile, and the free path decided */
	if (!reply_linked(ct))
		return e->state == start; /* not in the table yet (or no longer: the free path reports it) */
	/* Linked first, then the copy: the insert writes both nodes' pointers and
	 * (NAT) the reply tuple before it links the reply node, and a copy taken
	 * before the check could hold older values beside a linked pprev (review of
	 * 2026-11-27). The claim's compare-and-swap (state unchanged) orders the copy
	 * after the check on arm64 too, and says whether the free path decided. */
	if (claim(e, start, start) != start)
		return false;
	read_entry(&c, ct);
	/* Read first, then claim: the free path claims before the object is freed,
	 * so a won claim means what was read was still this entry; a lost one means
	 * it was freed meanwhile and the free path decided. */
	ns = net_id(c.net);
	l4proto = c.h[0].protonum;
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		if (claim(e, start, REPORTED) == start) {
			count(ns, l4proto, COUNT_INSERT);
			count(ns, l4proto, COUNT_LOST);
		}
		return false;
	}
	fill(r, ct, &c, CTSTORM_INSERT, ns, false);
	r->status |= IPS_CONFIRMED;
	r->ts_ns = start;
	set_task(r, &item->task);
	/* A NAT clash loser is hashed in the reply direction only. */
	if (!(r->status & IPS_NAT_CLASH))
		locate(r, ct, c.h, (__u32)-1, (__u32)-1);
	state = pack_buckets(r);
	if (claim(e, start, state) == start) {
		bpf_ringbuf_submit(r, 0);
		count(ns, l4proto, COUNT_INSERT);
	} else {
		bpf_ringbuf_discard(r, 0);
	}
	return false;
}

struct sweep_ctx {
	__u64 started_ns;
	bool stopped; /* met the queue's end, or an item queued after the run began */
};

/* Sweeps are serialized by userspace (ct_probe_sweep's lock) and only they pop,
 * so the head peeked is the head popped: an item queued after this run began
 * stays where it is, and the queue's order with it. */
static long sweep_step(__u32 i, struct sweep_ctx *c)
{
	struct pending_item item;

	if (bpf_map_peek_elem(&pending, &item) || item.queued_ns >= c->started_ns ||
	    bpf_map_pop_elem(&pending, &item)) {
		c->stopped = true;
		return 1;
	}
	if (!sweep_item(&item))
		return 0;
	if (c->started_ns - item.start_ns > CTSTORM_PENDING_MAX_AGE_NS) {
		health_inc(CTSTORM_H_PENDING_EXPIRED);
		return 0;
	}
	item.queued_ns = bpf_ktime_get_ns();
	if (bpf_map_push_elem(&pending, &item, 0))
		health_inc(CTSTORM_H_PENDING_OVERFLOW);
	return 0;
}

/* Never attached: userspace runs it with BPF_PROG_TEST_RUN before each drain, so
 * confirmed entries are reported within one poll interval of their insert. It
 * pops what was queued before it began, CTSTORM_SWEEP_BATCH items at most: its
 * cost follows the allocations since the last sweep, not the queue's capacity.
 * Returns 1 when items it did not reach remain. */
SEC("raw_tp")
int sweep(void *ctx)
{
	struct sweep_ctx c = { .started_ns = bpf_ktime_get_ns() };

	bpf_loop(CTSTORM_SWEEP_BATCH, sweep_step, &c, 0);
	return !c.stopped;
}

/* The whole-table census (census.c): one object, so it reads table_base. */
#include "census.c"
