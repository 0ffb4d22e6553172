// SPDX-License-Identifier: GPL-2.0
/* The census: a walk of the whole conntrack hash table in the kernel, without
 * /proc and without kernel symbols (the array's address comes from inserts:
 * table_base). Included by ctstorm.bpf.c, so one object holds both.
 *
 * Never attached: userspace runs it with BPF_PROG_TEST_RUN again and again. A
 * run walks whole buckets, about CENSUS_SOFT_STEPS steps and never more than
 * CENSUS_STEPS, and keeps its place in .bss: between runs the place is always a
 * bucket's start, never a node (a node may be freed once the run's RCU read
 * section ends). Without bpf_loop (5.17+), so it runs on 5.10 too: each step is
 * a global function, checked once by the verifier.
 *
 * Like the kernel's own lookup (____nf_conntrack_find), a chain is trusted only
 * when it ends at its own bucket's marker: the slab is SLAB_TYPESAFE_BY_RCU, so a
 * node can be freed and reused in another chain (or, on 5.10, put on a per-CPU
 * dying list) while the walk is on it. A bucket's counts are staged and committed
 * at its marker; a foreign marker walks the bucket again. */

/* Steps per run at most; after the soft limit a run ends at the next bucket end.
 * A bucket takes at most (CENSUS_RETRIES + 1) walks of 1 + CENSUS_MAX_CHAIN + 1
 * steps (head, nodes, marker) and CENSUS_MAX_CHAIN commits, 1288 steps: it
 * always fits in what is left after the soft limit. */
#define CENSUS_STEPS 2048
#define CENSUS_SOFT_STEPS 700
/* A longer chain is a walk gone astray (the kernel keeps them under ~80). */
#define CENSUS_MAX_CHAIN 256
/* Walks of one bucket that met a foreign marker before it is taken as it is. */
#define CENSUS_RETRIES 3
_Static_assert(CENSUS_STEPS >= CENSUS_SOFT_STEPS + (CENSUS_RETRIES + 1) * (CENSUS_MAX_CHAIN + 2) + CENSUS_MAX_CHAIN + 1,
	       "a bucket begun past the soft limit must end within the run: a run never stops mid-bucket");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* resized by userspace */
	__type(key, struct ctstorm_census_key);
	__type(value, __u64);
} census_netns SEC(".maps");

/* Set by userspace before the first run of a census. */
__u64 census_base = 0;
__u32 census_buckets = 0;
/* Count NAT clash entries per netns (tracepoint mode, whose counters include
 * them while they live; fentry and kprobe count their insert when freed). */
__u32 census_count_clash = 0;

/* Where the walk is. census_cursor: the value to follow next, 0 when the bucket's
 * head is still to read. Once its marker was met (census_committing), the
 * bucket's staged entries are committed one a step, census_commit so far. */
__u32 census_bucket = 0;
__u64 census_cursor = 0;
__u32 census_chain = 0;
__u32 census_retries = 0;
__u32 census_committing = 0;
__u32 census_commit = 0;
__u32 census_done = 0;
/* This bucket's entries, by netns, until its marker says the chain was whole. */
__u32 census_staged = 0;
struct ctstorm_census_key census_stage[CENSUS_MAX_CHAIN] = {};
__u32 census_staged_clash = 0;

/* The netns of the last entry staged, by its struct net's address: entries of one
 * netns come in runs. Kept for one run only (at most CENSUS_STEPS steps): a struct
 * net is freed only after cleanup_net has killed the netns's entries and waited
 * in rcu_barrier(), and another allocated at its address in the same run is
 * implausible (reading the netns through each entry has the same exposure). */
__u64 census_net = 0;

__u64 census_net_cookie = 0;
__u32 census_net_ino = 0;

struct ctstorm_census census_out = {};
__u64 census_hist[CTSTORM_CHAIN_BINS + 1] = {};

/* A node as the census reads it: its next pointer and dir and, for a reply node
 * where `has_status`, its entry's status. */
struct census_node {
	__u64 next;
	__u64 status;
	__u8 dir;
	bool has_status;
};

/* Whether status follows the reply node (Debian 5.10 to 6.18 alike): a reply
 * node read with the 8 bytes after it brings its entry's status along. */
static __always_inline bool census_status_follows(void)
{
	return raw_hash_layout() &&
	       bpf_core_field_offset(struct nf_conn, status) == bpf_core_field_offset(struct nf_conn, tuplehash) + 112 &&
	       bpf_core_field_size(struct nf_conn, status) == 8;
}

/* One read of the node and its tuple: 56 bytes, or 64 where status follows a
 * reply node (a status read saved per reply node; one read of 128 bytes that
 * took ct_net too was slower: 160-168 ms a census against 137-140, measured).
 * Else field by field. Returns false when the node could not be read. */
static __always_inline bool census_read_node(struct census_node *n, __u64 v)
{
	__u64 w[8];

	if (census_status_follows()) {
		if (bpf_probe_read_kernel(w, sizeof(w), (void *)v))
			return false;
		n->next = w[0];
		n->dir = ((__u8 *)w)[55];
		n->status = w[7];
		n->has_status = n->dir;
		return true;
	}
	if (raw_hash_layout()) {
		if (bpf_probe_read_kernel(w, sizeof(struct raw_hash), (void *)v))
			return false;
		n->next = w[0];
		n->dir = ((__u8 *)w)[55];
		return true;
	}
	n->dir = BPF_CORE_READ((struct nf_conntrack_tuple_hash *)v, tuple.dst.dir);
	return !bpf_probe_read_kernel(&n->next, sizeof(n->next), (void *)v);
}

static __always_inline struct netns_id census_entry_netns(__u64 net)
{
	struct netns_id id;

	if (!net || net != census_net) {
		id = net_id(net);
		census_net_cookie = id.cookie;
		census_net_ino = id.ino;
		census_net = net;
		return id;
	}
	id.cookie = census_net_cookie;
	id.ino = census_net_ino;
	return id;
}

/* Stages the entry a node belongs to, if the node stands for it: its original
 * node, or the reply node of a NAT clash entry (in the table by that alone; its
 * original node is a fake, unhashed one). */
static __always_inline void census_stage_node(__u64 node, const struct census_node *n)
{
	__u8 dir = n->dir;
	struct nf_conn *ct;
	struct netns_id ns;
	__u32 i = census_staged;

	/* Offsets of the two nodes in the running kernel's struct nf_conn (CO-RE,
	 * constant indexes: a variable one would scale by the local struct's size). */
	ct = (void *)(node - (dir ? node_of(NULL, 1) : node_of(NULL, 0)));
	if (dir) {
		if (!((n->has_status ? n->status : BPF_CORE_READ(ct, status)) & IPS_NAT_CLASH))
			return;
		census_staged_clash++;
		if (!census_count_clash)
			return;
	}
	if (i >= CENSUS_MAX_CHAIN)
		return;
	ns = census_entry_netns((__u64)BPF_CORE_READ(ct, ct_net.net));
	census_stage[i].netns_cookie = ns.cookie;
	census_stage[i].netns_ino = ns.ino;
	census_stage[i].pad = 0;
	census_staged = i + 1;
}

static __always_inline void census_restart_bucket(void)
{
	census_cursor = 0;
	census_chain = 0;
	census_staged = 0;
	census_staged_clash = 0;
	census_committing = 0;
	census_commit = 0;
}

/* Committed entries of one netns not yet added to its row: a row is looked up
 * once per run of entries of one netns (and at the end of each run of the
 * program), not once per entry. */
struct ctstorm_census_key census_acc_key = {};
__u64 census_acc = 0;

static __always_inline void census_flush(void)
{
	struct ctstorm_census_key key = census_acc_key;
	__u64 add = census_acc, *n;

	if (!add)
		return;
	census_acc = 0;
	n = bpf_map_lookup_elem(&census_netns, &key);
	if (n)
		*n += add;
	else if (bpf_map_update_elem(&census_netns, &key, &add, BPF_NOEXIST))
		census_out.netns_overflow += add;
}

/* Adds one staged entry to its netns's count. */
static __always_inline void census_commit_one(__u32 i)
{
	if (i >= CENSUS_MAX_CHAIN)
		return;
	if (census_acc && census_stage[i].netns_cookie == census_acc_key.netns_cookie &&
	    census_stage[i].netns_ino == census_acc_key.netns_ino) {
		census_acc++;
		return;
	}
	census_flush();
	census_acc_key = census_stage[i];
	census_acc = 1;
}

/* The bucket is whole (or given up on): its counts join the totals. */
static __always_inline int census_end_bucket(int step)
{
	__u32 idx = census_chain;

	if (idx > CTSTORM_CHAIN_BINS)
		idx = CTSTORM_CHAIN_BINS;
	census_hist[idx]++;
	census_out.nodes += census_chain;
	census_out.entries += census_staged;
	census_out.nat_clash += census_staged_clash;
	if (!census_chain)
		census_out.empty++;
	if (census_chain > census_out.longest)
		census_out.longest = census_chain;
	census_out.buckets_walked++;
	census_bucket++;
	census_restart_bucket();
	census_retries = 0;
	if (census_bucket >= census_buckets)
		census_done = 1;
	return census_done || step >= CENSUS_SOFT_STEPS;
}

/* One step: read a bucket's head, follow one node, check the end marker, or
 * commit one staged entry. `step` is the run's step count. Returns 1 when the
 * run should end: the census is done, or a bucket just ended past the soft limit. */
__noinline int census_step(int step)
{
	__u64 v = census_cursor, next = 0, marker = (__u64)census_bucket << 1 | 1;
	__u32 c = census_commit;
	struct census_node n = {};

	if (census_done || census_bucket >= census_buckets) {
		census_done = 1;
		return 1;
	}
	if (census_committing) {
		if (c < census_staged) {
			census_commit_one(c);
			census_commit = c + 1;
			return 0;
		}
		return census_end_bucket(step);
	}
	if (!v) {
		if (!kernel_ptr(census_base) ||
		    bpf_probe_read_kernel(&v, sizeof(v), (void *)(census_base + 8 * (__u64)census_bucket)) || !v) {
			/* Not a bucket of a table: skipped, kept out of the histogram. */
			census_out.read_errors++;
			census_out.buckets_walked++;
			census_bucket++;
			census_restart_bucket();
			if (census_bucket >= census_buckets)
				census_done = 1;
			return census_done;
		}
		census_restart_bucket();
		census_cursor = v;
		return 0;
	}
	if (v & 1) {
		if (v == marker) {
			census_committing = 1;
			return 0;
		}
		/* Another bucket's marker, or a dying list's: an entry moved under the
		 * walk. Walk the bucket again, a few times; then take it as it is. */
		census_out.moved++;
		if (++census_retries <= CENSUS_RETRIES) {
			census_restart_bucket();
			return 0;
		}
		census_committing = 1;
		return 0;
	}
	if (!kernel_ptr(v)) {
		/* Not a node: the chain was cut (the retry path, as a foreign marker). */
		census_out.read_errors++;
		census_cursor = marker ^ 2;
		return 0;
	}
	if (!census_read_node(&n, v)) {
		/* An address that is no node: the retry path, staging nothing from it. */
		census_out.read_errors++;
		census_cursor = marker ^ 2;
		return 0;
	}
	census_chain++;
	census_stage_node(v, &n);
	if (census_chain >= CENSUS_MAX_CHAIN) {
		census_cursor = marker ^ 2; /* not this bucket's marker: the retry path */
		return 0;
	}
	next = n.next;
	if (!next) {
		census_out.read_errors++;
		next = marker ^ 2;
	}
	census_cursor = next;
	return 0;
}

SEC("raw_tp")
int census(void *ctx)
{
	census_net = 0;
	for (int i = 0; i < CENSUS_STEPS; i++) {
		if (census_step(i))
			goto out;
	}
	/* Out of steps inside a bucket (cannot happen with the limits above): never
	 * keep a node across runs; the next run walks the bucket again. */
	census_restart_bucket();
out:
	census_flush(); /* userspace reads the rows once a run says the census is done */
	return 0;
}
