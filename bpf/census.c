// SPDX-License-Identifier: GPL-2.0
/* The census: a walk of the whole conntrack hash table in the kernel, without
 * /proc and without kernel symbols (the array's address comes from inserts:
 * table_base). Included by ctstorm.bpf.c, so one object holds both.
 *
 * Never attached: userspace runs it with BPF_PROG_TEST_RUN again and again. A
 * run walks whole buckets for about CENSUS_STEPS steps and keeps its place in
 * .bss, so no run holds the RCU read lock for long. A run ends at a bucket's
 * end when it can (a node kept from one run to the next may have been freed and
 * reused meanwhile: the walk then ends at another bucket's marker, counted in
 * `moved`, or at a failed read).
 * Without bpf_loop (5.17+), so it runs on 5.10 too: each step is a global
 * function, checked once by the verifier. */

/* Steps (a node or a bucket end) per run at most; after the soft limit a run ends
 * at the next bucket end. Chains longer than the difference are carried over. */
#define CENSUS_STEPS 2048
#define CENSUS_SOFT_STEPS 1536
/* A chain longer than this is a walk gone astray (the kernel keeps them < ~80). */
#define CENSUS_MAX_CHAIN 1024

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* resized by userspace */
	__type(key, struct ctstorm_census_key);
	__type(value, __u64);
} census_netns SEC(".maps");

/* Set by userspace before the first run of a census. */
__u64 census_base = 0;
__u32 census_buckets = 0;
/* Where the walk is: the bucket, and the value to follow next (0: the bucket's
 * head is still to read). */
__u32 census_bucket = 0;
__u64 census_cursor = 0;
__u32 census_chain = 0;
__u32 census_done = 0;
struct ctstorm_census census_out = {};
__u64 census_hist[CTSTORM_CHAIN_BINS + 1] = {};

static __always_inline void census_count_entry(__u64 node)
{
	struct nf_conntrack_tuple_hash *h = (void *)node;
	__u8 dir = BPF_CORE_READ(h, tuple.dst.dir);
	struct nf_conn *ct;
	struct netns_id ns;
	struct ctstorm_census_key key = {};
	__u64 one = 1, *n;

	/* Offsets of the two nodes in the running kernel's struct nf_conn (CO-RE,
	 * constant indexes: a variable one would scale by the local struct's size). */
	ct = (void *)(node - (dir ? node_of(NULL, 1) : node_of(NULL, 0)));
	if (dir) {
		/* A NAT clash entry is in the table by its reply node alone. */
		if (!(BPF_CORE_READ(ct, status) & IPS_NAT_CLASH))
			return;
	}
	census_out.entries++;
	ns = ct_netns(ct);
	key.netns_cookie = ns.cookie;
	key.netns_ino = ns.ino;
	n = bpf_map_lookup_elem(&census_netns, &key);
	if (n)
		(*n)++;
	else if (bpf_map_update_elem(&census_netns, &key, &one, BPF_NOEXIST))
		census_out.netns_overflow++;
}

/* One step: read a bucket's head, follow one node, or close a bucket at its end
 * marker. `step` is the run's step count. Returns 1 when the run should end: the
 * census is done, or a bucket just ended past the soft limit. */
__noinline int census_step(int step)
{
	__u64 v = census_cursor, next = 0, marker = (__u64)census_bucket << 1 | 1;
	__u32 idx;

	if (census_done || census_bucket >= census_buckets) {
		census_done = 1;
		return 1;
	}
	if (!v) {
		if (bpf_probe_read_kernel(&v, sizeof(v), (void *)(census_base + 8 * (__u64)census_bucket)) || !v) {
			census_out.read_errors++;
			v = marker;
		}
		census_chain = 0;
		census_cursor = v;
		return 0;
	}
	if (v & 1) {
		if (v != marker)
			census_out.moved++;
		idx = census_chain;
		if (idx > CTSTORM_CHAIN_BINS)
			idx = CTSTORM_CHAIN_BINS;
		census_hist[idx]++;
		if (!census_chain)
			census_out.empty++;
		if (census_chain > census_out.longest)
			census_out.longest = census_chain;
		census_out.buckets_walked++;
		census_bucket++;
		census_cursor = 0;
		if (census_bucket >= census_buckets)
			census_done = 1;
		return census_done || step >= CENSUS_SOFT_STEPS;
	}
	census_out.nodes++;
	census_chain++;
	census_count_entry(v);
	if (census_chain >= CENSUS_MAX_CHAIN) {
		census_out.moved++;
		census_cursor = marker;
		return 0;
	}
	if (bpf_probe_read_kernel(&next, sizeof(next), (void *)v) || !next) {
		census_out.read_errors++;
		next = marker;
	}
	census_cursor = next;
	return 0;
}

SEC("raw_tp")
int census(void *ctx)
{
	for (int i = 0; i < CENSUS_STEPS; i++) {
		if (census_step(i))
			break;
	}
	return 0;
}
