/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by the probe (ctstorm.bpf.c), the loader (native/) and the TypeScript
 * decoder (src/record.ts, whose offsets test/unit/layout.test.ts checks against
 * this file). Fixed-width fields, explicit padding: the layout is the contract. */
#ifndef CTSTORM_H
#define CTSTORM_H

#include <linux/types.h>

/* 2: the process context of inserts (context, tgid, cgroup_id, comm), appended. */
#define CTSTORM_RECORD_VERSION 2

enum ctstorm_record_type {
	CTSTORM_INSERT = 1,
	CTSTORM_DESTROY = 2,
};

/* Where an insert happened (record.context). The kernel creates an entry in the
 * context of the packet that makes it: a local process sending its first packet
 * (connect, sendmsg), or softirq for received and forwarded packets, where the
 * task running is whoever was interrupted and names nothing. */
enum ctstorm_context {
	CTSTORM_CTX_UNKNOWN = 0,   /* destroys; late inserts; a CPU not yet seen outside a softirq */
	CTSTORM_CTX_TASK = 1,      /* a process: tgid, cgroup_id and comm are its */
	CTSTORM_CTX_INTERRUPT = 2, /* a softirq (received or forwarded packets): no process */
	CTSTORM_CTX_KERNEL = 3,    /* a kernel thread (threaded NAPI, a kworker): tgid, comm are its */
};

/* What the record knows; a mode that cannot know something leaves the bit clear. */
enum ctstorm_record_flags {
	CTSTORM_F_BUCKETS = 1 << 0,  /* bucket_orig/bucket_reply are valid */
	CTSTORM_F_CHAIN = 1 << 1,    /* chain_orig/chain_reply are valid */
	CTSTORM_F_LIFETIME = 1 << 2, /* lifetime_ns is valid (destroy) */
	CTSTORM_F_LATE = 1 << 3,     /* insert seen only when the entry was freed */
	CTSTORM_F_CHAIN_CAPPED = 1 << 4, /* a chain was longer than the walk: its length is a floor */
};

struct ctstorm_tuple {
	__u8 src[16];  /* IPv4 uses the first 4 bytes */
	__u8 dst[16];
	__u8 sport[2]; /* kernel bytes of src.u.all: port or ICMP id, network order */
	__u8 dport[2]; /* kernel bytes of dst.u.all: port, or ICMP type then code */
};

struct ctstorm_record {
	__u8 version;        /* 0  CTSTORM_RECORD_VERSION */
	__u8 type;           /* 1  enum ctstorm_record_type */
	__u8 l3proto;        /* 2  AF_INET or AF_INET6 */
	__u8 l4proto;        /* 3  IPPROTO_* */
	__u8 tcp_state;      /* 4  enum tcp_conntrack, 0 when not TCP */
	__u8 context;        /* 5  enum ctstorm_context (inserts) */
	__u16 flags;         /* 6  enum ctstorm_record_flags */
	__u64 ts_ns;         /* 8  CLOCK_MONOTONIC */
	__u64 lifetime_ns;   /* 16 destroy: time since insert */
	__u32 netns_ino;     /* 24 inode of the entry's netns */
	__u32 status;        /* 28 ct->status (IPS_* bits) */
	__u32 mark;          /* 32 */
	__u16 zone;          /* 36 */
	__u16 pad1;          /* 38 */
	__u32 bucket_orig;   /* 40 hash bucket of the original direction */
	__u32 bucket_reply;  /* 44 hash bucket of the reply direction */
	__u16 chain_orig;    /* 48 nodes in that bucket's chain, this entry included */
	__u16 chain_reply;   /* 50 */
	__u32 pad2;          /* 52 */
	struct ctstorm_tuple orig;  /* 56 */
	struct ctstorm_tuple reply; /* 92 */
	__u64 netns_cookie;  /* 128 net->net_cookie, never reused (0: kernel has none) */
	/* Version 2: set when context is CTSTORM_CTX_TASK or _KERNEL, zero otherwise. */
	__u32 tgid;          /* 136 process id in the initial pid namespace */
	__u32 pad3;          /* 140 */
	__u64 cgroup_id;     /* 144 cgroup v2 id (the cgroup directory's inode) */
	char comm[16];       /* 152 the thread's command name, NUL-terminated */
};                           /* 168 */

/* Exact per-CPU counts; userspace sums the CPUs. */
struct ctstorm_counts {
	__u64 inserts;
	__u64 destroys;
	__u64 lost; /* records the ring buffer could not take */
};

/* Keyed by the netns cookie (the proc inode is reused once a netns is gone);
 * the inode is kept for people. */
struct ctstorm_netns_key {
	__u64 netns_cookie;
	__u32 netns_ino;
	__u8 l4proto;
	__u8 pad[3];
};

/* Index of the per-CPU health counters (map "health"). */
enum ctstorm_health {
	CTSTORM_H_UNCONFIRMED_FREES = 0, /* tracepoint mode: freed without ever being inserted */
	CTSTORM_H_UNTRACKED = 1,         /* no room in the "live" map: lifetime unknown */
	CTSTORM_H_NETNS_OVERFLOW = 2,    /* no room in the per-netns counter map */
	CTSTORM_H_UNKNOWN_START = 3,     /* destroyed entries inserted before ctstorm started */
	CTSTORM_H_NAT_CLASH = 4,         /* NAT clash losers freed (see on_conntrack_free) */
	CTSTORM_H_NEVER_HASHED = 5,      /* freed with IPS_CONFIRMED yet never in the table */
	CTSTORM_H_PENDING_OVERFLOW = 6,  /* tracepoint mode: no room in "pending": insert reported late */
	CTSTORM_H_INSERT_UNPAIRED = 7,   /* kprobe mode: a kretprobe without its kprobe, or the reverse */
	CTSTORM_H_PENDING_EXPIRED = 8,   /* tracepoint mode: unconfirmed past CTSTORM_PENDING_MAX_AGE_NS:
					  * the sweep stops watching; an insert is reported when freed */
	CTSTORM_H_MAX = 9,
};

/* Tracepoint mode: how long the sweep watches an allocated entry for its insert.
 * The kernel confirms within microseconds; an entry held longer (a packet queued
 * to userspace, a free the probe missed) would otherwise cycle through the queue
 * for ever. */
#define CTSTORM_PENDING_MAX_AGE_NS (10ULL * 1000000000ULL)
/* Items one sweep run handles at most: a run is not preemptible (BPF_PROG_TEST_RUN
 * pins it to its CPU), so userspace runs it again while it says there is more. */
#define CTSTORM_SWEEP_BATCH 4096

/* How long a softirq begun before the probe hooked softirqs may still run: the
 * probe waits this long before it hooks conntrack (a handler runs for a few ms). */
#define CTSTORM_SOFTIRQ_GRACE_NS (100 * 1000000)

#define CTSTORM_PROTO_SLOTS 256
/* Chain steps followed at most, per direction: above the kernel's own limit
 * (__nf_conntrack_confirm refuses an insert past 8 + up to 64 nodes). */
#define CTSTORM_MAX_WALK 96

/* Chain lengths counted one by one up to this; longer ones share the last bin. */
#define CTSTORM_CHAIN_BINS 128

/* What the census found (census.c); userspace reads it from .bss. */
struct ctstorm_census {
	__u64 buckets_walked; /* every bucket once, unreadable ones included */
	__u64 nodes;          /* hash nodes: two per entry (one for a NAT clash entry) */
	__u64 entries;
	__u64 empty;          /* buckets with no node */
	__u64 longest;        /* nodes in the longest chain */
	__u64 moved;          /* bucket walks that ended at another bucket's marker (an entry moved): walked again */
	__u64 read_errors;    /* reads that failed: the bucket was skipped, or its chain cut short */
	__u64 netns_overflow; /* entries whose netns found no room in census_netns */
	__u64 nat_clash;      /* NAT clash entries (in the table by their reply node) */
};

struct ctstorm_census_key {
	__u64 netns_cookie;
	__u32 netns_ino;
	__u32 pad;
};

#endif /* CTSTORM_H */
