/* SPDX-License-Identifier: GPL-2.0 */
/* The few kernel types the probe reads, declared with only the fields it uses.
 * CO-RE relocates every field by name against the running kernel's BTF, so the
 * layout here does not matter. Why not a generated vmlinux.h: on most distro
 * kernels nf_conntrack is a module, so the build host's vmlinux BTF has no
 * struct nf_conn; this file also shows exactly what the probe depends on. */
#ifndef CTSTORM_KERNEL_TYPES_H
#define CTSTORM_KERNEL_TYPES_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>

#define __ctcore __attribute__((preserve_access_index))

typedef __u32 gfp_t;

struct hlist_nulls_node {
	struct hlist_nulls_node *next, **pprev;
} __ctcore;

union nf_inet_addr {
	__u32 all[4];
} __ctcore;

union nf_conntrack_man_proto {
	__be16 all;
} __ctcore;

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	__u16 l3num;
} __ctcore;

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
		__u8 protonum;
		__u8 dir;
	} dst;
} __ctcore;

struct nf_conntrack_tuple_hash {
	struct hlist_nulls_node hnnode;
	struct nf_conntrack_tuple tuple;
} __ctcore;

struct nf_conntrack_zone {
	__u16 id;
} __ctcore;

struct ns_common {
	unsigned int inum;
} __ctcore;

struct net {
	struct ns_common ns;
	/* 5.12+. Before it an atomic64_t set only when first asked for: it would
	 * change under a running probe, so those kernels report no cookie. */
	__u64 net_cookie;
} __ctcore;

typedef struct {
	struct net *net;
} possible_net_t;

struct ip_ct_tcp {
	__u8 state;
} __ctcore;

union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
} __ctcore;

struct nf_conn {
	struct nf_conntrack_zone zone;
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
	possible_net_t ct_net;
	__u32 mark;
	union nf_conntrack_proto proto;
} __ctcore;

struct kmem_cache {
	unsigned int object_size;
	const char *name;
} __ctcore;

struct task_struct {
	unsigned int flags;
} __ctcore;

/* kprobes read arguments from the UAPI struct pt_regs (bpf_tracing.h names). */
#include <asm/ptrace.h>

#define IPS_CONFIRMED (1UL << 3)
/* In-kernel reuse of IPS_UNTRACKED_BIT: an entry that lost a clash and was added
 * beside the winner by nf_ct_resolve_clash_harder (NAT gave it another reply tuple). */
#define IPS_NAT_CLASH (1UL << 12)
#define IPPROTO_TCP 6

#endif /* CTSTORM_KERNEL_TYPES_H */
