/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Plain-C lifecycle of the ctstorm probe: open -> size maps -> choose the mode's
 * programs -> load -> attach; drain records; read counters; close. */
#ifndef CTSTORM_PROBE_H
#define CTSTORM_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ctstorm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ct_mode {
	CT_MODE_FENTRY = 0,
	CT_MODE_KPROBE = 1,
	CT_MODE_TRACEPOINT = 2,
	CT_MODE_COUNT = 3,
};

struct ct_probe_opts {
	uint32_t ring_bytes;      /* ring buffer size: a power of two, >= page size */
	uint32_t live_entries;    /* capacity of the live-entry map (lifetimes) */
	uint32_t pending_entries; /* tracepoint mode: entries waiting for the sweep (0: default) */
	uint32_t netns_entries;   /* netns x protocol counter rows (0: default) */
	uint32_t chain_walk;      /* chain steps walked at most (0: CTSTORM_MAX_WALK) */
	bool debug;               /* libbpf's log to stderr */
};

/* The probe's own structs and sizes (bpf/ctstorm.h): one definition for both sides. */
struct ct_netns_counts {
	uint64_t netns_cookie;
	uint32_t netns_ino;
	uint8_t l4proto;
	struct ctstorm_counts c;
};

#define CT_ERR_LEN 512
#define CT_PROTO_SLOTS CTSTORM_PROTO_SLOTS
#define CT_HEALTH_SLOTS CTSTORM_H_MAX

struct ct_probe;

const char *ct_mode_name(enum ct_mode mode);

/* JS thread. Returns 0 or -errno; on failure err says which step failed and why. */
int ct_probe_open(enum ct_mode mode, const struct ct_probe_opts *opts, struct ct_probe **out,
		  char *err, size_t errlen);

/* Worker thread (one at a time per probe). Copies whole records into buf until it
 * is full or the ring is empty, waiting up to timeout_ms for the first one.
 * Returns the number of bytes written, or -errno. */
long ct_probe_drain(struct ct_probe *p, uint8_t *buf, size_t cap, int timeout_ms);

/* Any thread. Runs the tracepoint-mode sweep so confirmed entries are counted. */
int ct_probe_sweep(struct ct_probe *p);

/* JS thread. Sums the CPUs. protos[CT_PROTO_SLOTS], health[CT_HEALTH_SLOTS]. */
int ct_probe_read_protocols(struct ct_probe *p, struct ctstorm_counts *protos);
int ct_probe_read_health(struct ct_probe *p, uint64_t *health);
/* Fills up to cap entries; returns how many there are (may exceed cap), or -errno. */
long ct_probe_read_netns(struct ct_probe *p, struct ct_netns_counts *out, size_t cap);

/* Runs of the attached programs the kernel skipped (recursion on a CPU, kprobe
 * misses): while 0, no event went unseen. *visible is false when this kernel
 * cannot tell all of them (kprobe misses before 6.7). JS thread. */
int ct_probe_read_misses(struct ct_probe *p, uint64_t *missed, bool *visible);

/* JS thread. Deletes one per-netns counter row (its netns is gone). 0, or -errno
 * (-ENOENT when there was no such row). */
int ct_probe_delete_netns(struct ct_probe *p, uint64_t cookie, uint32_t ino, uint8_t l4proto);

/* The census: a walk of the whole hash table in the kernel (bpf/census.c). JS
 * thread, one census at a time. start: -ENOENT while no insert has shown where
 * the table is, -ESTALE when the table was resized since and no insert has shown
 * the new one. run: up to max_runs program runs (700-2048 steps each); *done
 * once every bucket was walked; -ESTALE when the table was resized under the
 * walk. read: fills up to cap netns rows, returns how many there are. */
struct ct_census {
	uint64_t base;
	uint32_t buckets;
	bool done;
	struct ctstorm_census totals;
	uint64_t histogram[CTSTORM_CHAIN_BINS + 1];
};

struct ct_census_netns {
	uint64_t netns_cookie;
	uint32_t netns_ino;
	uint64_t entries;
};

int ct_probe_census_start(struct ct_probe *p, uint32_t buckets);
int ct_probe_census_run(struct ct_probe *p, int max_runs, bool *done);
long ct_probe_census_read(struct ct_probe *p, struct ct_census *out, struct ct_census_netns *rows, size_t cap);

/* What the insert and destroy hooks are in this mode, for the capability report. */
const char *ct_probe_hooks(enum ct_mode mode);

void ct_probe_close(struct ct_probe *p);

#ifdef __cplusplus
}
#endif

#endif /* CTSTORM_PROBE_H */
