// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* libbpf glue for the ctstorm probe. Kept in C so the lifecycle reads like the
 * libbpf-bootstrap loaders it follows; native/probe_binding.cc wraps it for JS. */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "ctstorm.h"
#include "ctstorm.skel.h"
#include "probe.h"

#define RING_FULL 1000 /* sample callback's "stop, the caller's buffer is full" */
#define MAX_LINKS 4

struct drain_state {
	uint8_t *buf;
	size_t cap, used;
};

struct ct_probe {
	enum ct_mode mode;
	struct ctstorm_bpf *skel;
	struct bpf_link *links[MAX_LINKS];
	struct ring_buffer *rb;
	struct drain_state drain;
	int ncpus;
	uint64_t census_base_seen;    /* table_base when a census last started */
	uint32_t census_buckets_seen; /* the bucket count then */
	/* One sweep at a time (the drain's worker thread and counters() on the main
	 * one): the sweep program relies on being the queue's only consumer. */
	pthread_mutex_t sweep_lock;
	/* softirq_entry, softirq_exit: tell inserts made by a process from those in softirq. */
	struct bpf_link *softirq_links[2];
};

static const char *mode_names[CT_MODE_COUNT] = { "fentry", "kprobe", "tracepoint" };

const char *ct_mode_name(enum ct_mode mode)
{
	return mode < CT_MODE_COUNT ? mode_names[mode] : "unknown";
}

const char *ct_probe_hooks(enum ct_mode mode)
{
	switch (mode) {
	case CT_MODE_FENTRY:
		return "insert: fexit __nf_conntrack_hash_insert; destroy: fentry nf_conntrack_free; process: raw_tp softirq_entry/exit";
	case CT_MODE_KPROBE:
		return "insert: kprobe+kretprobe __nf_conntrack_hash_insert; destroy: kprobe nf_conntrack_free; process: raw_tp softirq_entry/exit";
	case CT_MODE_TRACEPOINT:
		return "insert: raw_tp kmem_cache_alloc + sweep of confirmed entries; destroy: raw_tp kmem_cache_free; process: raw_tp softirq_entry/exit";
	default:
		return "";
	}
}

/* libbpf's log goes to stderr only when asked; the last warning is kept so a
 * failed load can say why. Loads happen on the JS thread only. */
static bool log_debug;
static char log_first[CT_ERR_LEN]; /* the first warning is usually the cause */

static int log_cb(enum libbpf_print_level level, const char *fmt, va_list args)
{
	va_list copy;

	va_copy(copy, args);
	if (level != LIBBPF_DEBUG && !log_first[0]) {
		vsnprintf(log_first, sizeof(log_first), fmt, copy);
		log_first[strcspn(log_first, "\n")] = 0;
	}
	va_end(copy);
	if (log_debug)
		return vfprintf(stderr, fmt, args);
	return 0;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct drain_state *d = ctx;

	if (size != sizeof(struct ctstorm_record))
		return 0; /* not ours: a newer/older probe layout, skip */
	memcpy(d->buf + d->used, data, size);
	d->used += size;
	/* The record that returns an error is already consumed, so stop only after
	 * copying, once the next record would not fit. */
	return d->cap - d->used < sizeof(struct ctstorm_record) ? -RING_FULL : 0;
}

static void set_programs(struct ctstorm_bpf *s, enum ct_mode mode)
{
	bpf_program__set_autoload(s->progs.fexit_hash_insert, mode == CT_MODE_FENTRY);
	bpf_program__set_autoload(s->progs.fentry_conntrack_free, mode == CT_MODE_FENTRY);
	bpf_program__set_autoload(s->progs.kprobe_hash_insert, mode == CT_MODE_KPROBE);
	bpf_program__set_autoload(s->progs.kretprobe_hash_insert, mode == CT_MODE_KPROBE);
	bpf_program__set_autoload(s->progs.kprobe_conntrack_free, mode == CT_MODE_KPROBE);
	bpf_program__set_autoload(s->progs.tp_cache_alloc, mode == CT_MODE_TRACEPOINT);
	bpf_program__set_autoload(s->progs.tp_cache_free, mode == CT_MODE_TRACEPOINT);
	bpf_program__set_autoload(s->progs.sweep, mode == CT_MODE_TRACEPOINT);
}

/* The programs to attach, in order; the sweep is run, never attached. */
static int mode_programs(struct ctstorm_bpf *s, enum ct_mode mode, struct bpf_program **out)
{
	int n = 0;

	switch (mode) {
	case CT_MODE_FENTRY:
		out[n++] = s->progs.fexit_hash_insert;
		out[n++] = s->progs.fentry_conntrack_free;
		break;
	case CT_MODE_KPROBE:
		out[n++] = s->progs.kprobe_hash_insert;
		out[n++] = s->progs.kretprobe_hash_insert;
		out[n++] = s->progs.kprobe_conntrack_free;
		break;
	case CT_MODE_TRACEPOINT:
		out[n++] = s->progs.tp_cache_alloc;
		out[n++] = s->progs.tp_cache_free;
		break;
	default:
		break;
	}
	return n;
}

static const struct btf_type *skip_mods(const struct btf *btf, const struct btf_type *t)
{
	while (t && (btf_is_mod(t) || btf_is_typedef(t)))
		t = btf__type_by_id(btf, t->type);
	return t;
}

/* Whether raw tracepoint tp passes a struct kmem_cache * as its third argument, as
 * tp_cache_alloc/free read it. Kernels before 6.0 pass none to kmem_cache_alloc and
 * only the cache's name to kmem_cache_free (5.12-5.19): a raw_tp there loads but
 * reads the wrong argument, so it would silently see nothing. */
static bool tracepoint_passes_cache(const struct btf *btf, const char *tp)
{
	char name[64];
	const struct btf_type *t;
	const struct btf_param *params;
	int id;

	snprintf(name, sizeof(name), "btf_trace_%s", tp);
	id = btf__find_by_name_kind(btf, name, BTF_KIND_TYPEDEF);
	if (id < 0)
		return false;
	t = btf__type_by_id(btf, id); /* typedef -> pointer -> prototype */
	t = skip_mods(btf, btf__type_by_id(btf, t->type));
	if (!t || !btf_is_ptr(t))
		return false;
	t = skip_mods(btf, btf__type_by_id(btf, t->type));
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 4)
		return false;
	params = btf_params(t); /* [0] is the tracepoint's __data */
	t = skip_mods(btf, btf__type_by_id(btf, params[3].type));
	if (!t || !btf_is_ptr(t))
		return false;
	t = skip_mods(btf, btf__type_by_id(btf, t->type));
	return t && btf_is_struct(t) && !strcmp(btf__name_by_offset(btf, t->name_off), "kmem_cache");
}

static int check_tracepoints(const struct btf *btf, char *err, size_t errlen)
{
	static const char *const tps[] = { "kmem_cache_alloc", "kmem_cache_free" };
	int rc = 0;

	for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]) && !rc; i++) {
		if (tracepoint_passes_cache(btf, tps[i]))
			continue;
		snprintf(err, errlen,
			 "the %s tracepoint of this kernel does not pass the slab cache (kernels before 6.0 do not)",
			 tps[i]);
		rc = -EOPNOTSUPP;
	}
	return rc;
}

/* A hooked function's prototype as the probe reads it: the first argument a
 * struct nf_conn *, then `nints` 32-bit integers. */
struct hooked_fn {
	const char *name;
	int nints;
};

static const struct hooked_fn hooked_fns[] = {
	{ "__nf_conntrack_hash_insert", 2 }, /* (ct, hash, reply_hash) */
	{ "nf_conntrack_free", 0 },          /* (ct) */
};

static bool prototype_matches(const struct btf *btf, int func_id, int nints)
{
	const struct btf_type *t = btf__type_by_id(btf, func_id);
	const struct btf_param *params;

	t = t ? btf__type_by_id(btf, t->type) : NULL;
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) != 1 + nints)
		return false;
	params = btf_params(t);
	t = skip_mods(btf, btf__type_by_id(btf, params[0].type));
	if (!t || !btf_is_ptr(t))
		return false;
	t = skip_mods(btf, btf__type_by_id(btf, t->type));
	if (!t || !btf_is_struct(t) || strcmp(btf__name_by_offset(btf, t->name_off), "nf_conn"))
		return false;
	for (int i = 1; i <= nints; i++) {
		t = skip_mods(btf, btf__type_by_id(btf, params[i].type));
		if (!t || !btf_is_int(t) || t->size != 4)
			return false;
	}
	return true;
}

/* fentry and kprobe modes read the hooked functions' arguments by position: a
 * kernel whose prototypes differ is refused rather than misread. Kernels without
 * BTF for the nf_conntrack module (before 5.11) cannot be checked; fentry cannot
 * attach there anyway. */
static int check_prototypes(struct btf *vmlinux, char *err, size_t errlen)
{
	struct btf *module = NULL;
	int rc = 0;

	if (!access("/sys/kernel/btf/nf_conntrack", R_OK))
		module = btf__load_module_btf("nf_conntrack", vmlinux);
	for (size_t i = 0; i < sizeof(hooked_fns) / sizeof(hooked_fns[0]) && !rc; i++) {
		const struct hooked_fn *fn = &hooked_fns[i];
		const struct btf *btf = module ? module : vmlinux;
		int id = btf__find_by_name_kind(btf, fn->name, BTF_KIND_FUNC);

		if (id < 0)
			continue; /* not in BTF (inlined or no module BTF): attach says so */
		if (prototype_matches(btf, id, fn->nints))
			continue;
		snprintf(err, errlen, "%s has a prototype ctstorm does not know on this kernel (expected struct nf_conn *%s)",
			 fn->name, fn->nints ? ", 2 x u32" : "");
		rc = -EOPNOTSUPP;
	}
	btf__free(module);
	return rc;
}

/* Before 6.1 (bpf_mem_alloc) a tracing program that uses a map allocating at
 * run time makes the verifier WARN (tainting the kernel, or panicking it under
 * panic_on_warn) and PREEMPT_RT refuse it: preallocate there, in bounded sizes. */
#define PREALLOC_LIVE_MAX (1u << 19)
#define PREALLOC_PENDING_MAX (1u << 16)
#define PREALLOC_NETNS_MAX 4096u

static void preallocate_maps(struct ctstorm_bpf *s)
{
	struct bpf_map *maps[] = { s->maps.live, s->maps.pending, s->maps.netns_counts };
	const uint32_t caps[] = { PREALLOC_LIVE_MAX, PREALLOC_PENDING_MAX, PREALLOC_NETNS_MAX };

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		bpf_map__set_map_flags(maps[i], bpf_map__map_flags(maps[i]) & ~BPF_F_NO_PREALLOC);
		if (bpf_map__max_entries(maps[i]) > caps[i])
			bpf_map__set_max_entries(maps[i], caps[i]);
	}
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fail(char *err, size_t errlen, int rc, const char *step)
{
	const char *why = log_first;

	if (!strncmp(why, "libbpf: ", 8))
		why += 8;
	if (why[0])
		snprintf(err, errlen, "%s: %s (%s)", step, strerror(-rc), why);
	else
		snprintf(err, errlen, "%s: %s", step, strerror(-rc));
	return rc;
}

int ct_probe_open(enum ct_mode mode, const struct ct_probe_opts *opts, struct ct_probe **out,
		  char *err, size_t errlen)
{
	struct bpf_program *progs[MAX_LINKS];
	struct btf *vmlinux = NULL;
	struct ct_probe *p;
	char step[160];
	int rc, n;

	*out = NULL;
	err[0] = 0;
	if (mode >= CT_MODE_COUNT)
		return fail(err, errlen, -EINVAL, "unknown mode");
	log_debug = opts->debug;
	log_first[0] = 0;
	libbpf_set_print(log_cb);

	p = calloc(1, sizeof(*p));
	if (!p)
		return fail(err, errlen, -ENOMEM, "allocate");
	pthread_mutex_init(&p->sweep_lock, NULL);
	p->mode = mode;
	p->ncpus = libbpf_num_possible_cpus();
	if (p->ncpus <= 0) {
		rc = fail(err, errlen, p->ncpus ? p->ncpus : -EINVAL, "count possible CPUs");
		goto cleanup;
	}

	vmlinux = btf__load_vmlinux_btf(); /* on failure the load fails next, and says why */
	if (vmlinux) {
		rc = mode == CT_MODE_TRACEPOINT ? check_tracepoints(vmlinux, err, errlen)
						: check_prototypes(vmlinux, err, errlen);
		if (rc)
			goto cleanup;
	}

	p->skel = ctstorm_bpf__open();
	if (!p->skel) {
		rc = fail(err, errlen, -errno, "open the BPF object");
		goto cleanup;
	}
	set_programs(p->skel, mode);
	p->skel->rodata->chain_walk_limit = opts->chain_walk;
	bpf_map__set_max_entries(p->skel->maps.records, opts->ring_bytes);
	bpf_map__set_max_entries(p->skel->maps.live, opts->live_entries);
	if (opts->pending_entries)
		bpf_map__set_max_entries(p->skel->maps.pending, opts->pending_entries);
	if (opts->netns_entries) {
		bpf_map__set_max_entries(p->skel->maps.netns_counts, opts->netns_entries);
		bpf_map__set_max_entries(p->skel->maps.census_netns, opts->netns_entries);
	}
	if (vmlinux && btf__find_by_name_kind(vmlinux, "bpf_mem_alloc", BTF_KIND_STRUCT) < 0)
		preallocate_maps(p->skel);

	rc = ctstorm_bpf__load(p->skel);
	if (rc) {
		snprintf(step, sizeof(step), "load %s programs", ct_mode_name(mode));
		rc = fail(err, errlen, rc, step);
		goto cleanup;
	}

	/* Softirqs first: an insert must know whether it runs in one. A softirq
	 * begun before the hook is over within the grace; wait it out, so that no
	 * insert is seen while a CPU's state is unknown. */
	/* Exit first: a softirq that enters and ends between the two attaches must
	 * not leave its CPU marked as in one. Without them, inserts say UNKNOWN. */
	p->softirq_links[1] = bpf_program__attach(p->skel->progs.tp_softirq_exit);
	p->softirq_links[0] = p->softirq_links[1] ? bpf_program__attach(p->skel->progs.tp_softirq_entry) : NULL;
	if (p->softirq_links[0]) {
		p->skel->bss->softirq_hooked_ns = monotonic_ns();
		nanosleep(&(struct timespec){ .tv_nsec = CTSTORM_SOFTIRQ_GRACE_NS }, NULL);
	}

	n = mode_programs(p->skel, mode, progs);
	for (int i = 0; i < n; i++) {
		p->links[i] = bpf_program__attach(progs[i]);
		if (!p->links[i]) {
			rc = -errno;
			snprintf(step, sizeof(step), "attach %s", bpf_program__section_name(progs[i]));
			rc = fail(err, errlen, rc, step);
			goto cleanup;
		}
	}

	/* Both halves of the kprobe pair are on: from now on a full slot is a miss. */
	p->skel->bss->armed_ns = monotonic_ns();

	p->rb = ring_buffer__new(bpf_map__fd(p->skel->maps.records), on_sample, &p->drain, NULL);
	if (!p->rb) {
		rc = fail(err, errlen, -errno, "create the ring buffer reader");
		goto cleanup;
	}
	btf__free(vmlinux);
#ifdef __GLIBC__
	/* Loading parsed the kernel's BTF (vmlinux and nf_conntrack's, tens of MB)
	 * and freed it; glibc keeps freed heap for reuse, which for an agent that
	 * never needs it again is resident memory for nothing (~20 MB measured). */
	malloc_trim(0);
#endif
	*out = p;
	return 0;

cleanup:
	btf__free(vmlinux);
	ct_probe_close(p);
	return rc;
}

int ct_probe_sweep(struct ct_probe *p)
{
	LIBBPF_OPTS(bpf_test_run_opts, run);
	int fd, rc = 0;

	if (p->mode != CT_MODE_TRACEPOINT)
		return 0;
	fd = bpf_program__fd(p->skel->progs.sweep);
	pthread_mutex_lock(&p->sweep_lock);
	/* A run handles CTSTORM_SWEEP_BATCH items at most and says when more wait;
	 * bounded here too, so a queue refilled as fast as it drains cannot hold the
	 * caller (the next drain sweeps again). */
	for (int i = 0; i < 64; i++) {
		run.retval = 0;
		if (bpf_prog_test_run_opts(fd, &run)) {
			rc = -errno;
			break;
		}
		if (!run.retval)
			break;
	}
	pthread_mutex_unlock(&p->sweep_lock);
	return rc;
}

/* Deletes every row of a hash map: keys first (get_next_key from the previous
 * key, not from the start each time), then the deletes. */
static int clear_hash(int fd, size_t key_size, size_t max)
{
	uint8_t *keys = calloc(max ? max : 1, key_size);
	size_t n = 0;
	int rc = 0;

	if (!keys)
		return -ENOMEM;
	while (n < max && !bpf_map_get_next_key(fd, n ? keys + (n - 1) * key_size : NULL, keys + n * key_size))
		n++;
	for (size_t i = 0; i < n; i++) {
		if (bpf_map_delete_elem(fd, keys + i * key_size) && errno != ENOENT) {
			rc = -errno;
			break;
		}
	}
	free(keys);
	return rc;
}

int ct_probe_census_start(struct ct_probe *p, uint32_t buckets)
{
	struct ctstorm_bpf__bss *b = p->skel->bss;
	uint64_t base = b->table_base;
	int rc;

	if (!buckets)
		return -EINVAL;
	if (!base)
		return -ENOENT;
	/* A base is paired with the bucket count seen when it was first used. The
	 * same base with another count: the table was resized (the old array freed)
	 * and no insert has shown the new one yet. */
	if (base != p->census_base_seen) {
		p->census_base_seen = base;
		p->census_buckets_seen = buckets;
	} else if (buckets != p->census_buckets_seen) {
		__sync_val_compare_and_swap(&b->table_base, base, 0);
		p->census_base_seen = 0;
		return -ESTALE;
	}
	rc = clear_hash(bpf_map__fd(p->skel->maps.census_netns), sizeof(struct ctstorm_census_key),
			bpf_map__max_entries(p->skel->maps.census_netns));
	if (rc)
		return rc;
	memset(&b->census_out, 0, sizeof(b->census_out));
	memset(b->census_hist, 0, sizeof(b->census_hist));
	b->census_base = base;
	b->census_buckets = buckets;
	b->census_count_clash = p->mode == CT_MODE_TRACEPOINT;
	b->census_bucket = 0;
	b->census_cursor = 0;
	b->census_chain = 0;
	b->census_retries = 0;
	b->census_staged = 0;
	b->census_staged_clash = 0;
	b->census_committing = 0;
	b->census_commit = 0;
	b->census_done = 0;
	b->census_acc = 0;
	return 0;
}

int ct_probe_census_run(struct ct_probe *p, int max_runs, bool *done)
{
	LIBBPF_OPTS(bpf_test_run_opts, run);
	int fd = bpf_program__fd(p->skel->progs.census);
	struct ctstorm_bpf__bss *b = p->skel->bss;

	for (int i = 0; i < max_runs && !b->census_done; i++) {
		if (bpf_prog_test_run_opts(fd, &run))
			return -errno;
	}
	*done = b->census_done;
	/* An insert showed another array meanwhile: the table was resized under the
	 * walk, whose counts are of a freed array. */
	if (b->table_base != b->census_base) {
		*done = true;
		return -ESTALE;
	}
	return 0;
}

long ct_probe_census_read(struct ct_probe *p, struct ct_census *out, struct ct_census_netns *rows, size_t cap)
{
	struct ctstorm_census_key key, next, *prev = NULL;
	int fd = bpf_map__fd(p->skel->maps.census_netns);
	const struct ctstorm_bpf__bss *b = p->skel->bss;
	long n = 0;
	uint64_t v;

	out->base = b->census_base;
	out->buckets = b->census_buckets;
	out->done = b->census_done;
	memcpy(&out->totals, &b->census_out, sizeof(out->totals));
	memcpy(out->histogram, b->census_hist, sizeof(out->histogram));
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v))
			continue; /* deleted meanwhile */
		if ((size_t)n < cap)
			rows[n] = (struct ct_census_netns){ .netns_cookie = key.netns_cookie, .netns_ino = key.netns_ino, .entries = v };
		n++;
	}
	return n;
}

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

long ct_probe_drain(struct ct_probe *p, uint8_t *buf, size_t cap, int timeout_ms)
{
	/* Tracepoint mode sweeps between short waits, so an insert is reported
	 * within ~5 ms even while the ring stays empty (p99 from kernel to engine
	 * was 12.9 ms with 10 ms slices at 100k inserts/s; an idle sweep costs
	 * microseconds, so 200 a second are cheap). */
	int slice = p->mode == CT_MODE_TRACEPOINT ? 5 : timeout_ms;
	struct timespec start;
	int rc;

	if (cap < sizeof(struct ctstorm_record))
		return -ENOSPC;
	p->drain = (struct drain_state){ .buf = buf, .cap = cap };
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		rc = ct_probe_sweep(p);
		if (rc)
			return rc;
		rc = ring_buffer__consume(p->rb);
		if (rc < 0 && rc != -RING_FULL)
			return rc;
		if (p->drain.used)
			break;
		long left = timeout_ms - elapsed_ms(&start);
		if (left <= 0)
			break;
		rc = ring_buffer__poll(p->rb, left < slice ? (int)left : slice);
		if (rc < 0 && rc != -RING_FULL && rc != -EINTR)
			return rc;
		if (p->drain.used)
			break;
	}
	return (long)p->drain.used;
}

static void add_counts(struct ctstorm_counts *to, const struct ctstorm_counts *percpu, int ncpus)
{
	for (int c = 0; c < ncpus; c++) {
		to->inserts += percpu[c].inserts;
		to->destroys += percpu[c].destroys;
		to->lost += percpu[c].lost;
	}
}

int ct_probe_read_protocols(struct ct_probe *p, struct ctstorm_counts *protos)
{
	struct ctstorm_counts *percpu = calloc(p->ncpus, sizeof(*percpu));
	int fd = bpf_map__fd(p->skel->maps.proto_counts), rc = 0;

	if (!percpu)
		return -ENOMEM;
	memset(protos, 0, sizeof(*protos) * CT_PROTO_SLOTS);
	for (uint32_t k = 0; k < CT_PROTO_SLOTS; k++) {
		if (bpf_map_lookup_elem(fd, &k, percpu)) {
			rc = -errno;
			break;
		}
		add_counts(&protos[k], percpu, p->ncpus);
	}
	free(percpu);
	return rc;
}

int ct_probe_read_health(struct ct_probe *p, uint64_t *health)
{
	uint64_t *percpu = calloc(p->ncpus, sizeof(*percpu));
	int fd = bpf_map__fd(p->skel->maps.health), rc = 0;

	if (!percpu)
		return -ENOMEM;
	for (uint32_t k = 0; k < CT_HEALTH_SLOTS; k++) {
		health[k] = 0;
		if (bpf_map_lookup_elem(fd, &k, percpu)) {
			rc = -errno;
			break;
		}
		for (int c = 0; c < p->ncpus; c++)
			health[k] += percpu[c];
	}
	free(percpu);
	return rc;
}

long ct_probe_read_netns(struct ct_probe *p, struct ct_netns_counts *out, size_t cap)
{
	struct ctstorm_counts *percpu = calloc(p->ncpus, sizeof(*percpu));
	int fd = bpf_map__fd(p->skel->maps.netns_counts);
	struct ctstorm_netns_key key, next;
	void *prev = NULL;
	long n = 0;

	if (!percpu)
		return -ENOMEM;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, percpu))
			continue; /* removed meanwhile */
		if ((size_t)n < cap) {
			out[n] = (struct ct_netns_counts){ .netns_cookie = key.netns_cookie,
							   .netns_ino = key.netns_ino,
							   .l4proto = key.l4proto };
			add_counts(&out[n].c, percpu, p->ncpus);
		}
		n++;
	}
	free(percpu);
	return n;
}

/* bpf_link_info.perf_event.kprobe.missed (Linux 6.7+), by offset: the UAPI
 * headers this builds against may predate it. */
#define LINK_INFO_PERF_EVENT_TYPE 16
#define LINK_INFO_KPROBE_MISSED 48
#define PERF_EVENT_KPROBE 3
#define PERF_EVENT_KRETPROBE 4

static bool kernel_at_least(int major, int minor)
{
	int a = 0, b = 0;
	char rel[65] = "";
	FILE *f = fopen("/proc/sys/kernel/osrelease", "r");

	if (f) {
		if (!fgets(rel, sizeof(rel), f))
			rel[0] = 0;
		fclose(f);
	}
	if (sscanf(rel, "%d.%d", &a, &b) != 2)
		return false;
	return a > major || (a == major && b >= minor);
}

/* A kprobe the kernel skipped (another kprobe running on that CPU) never runs
 * its program, so no recursion counter sees it: only the perf link says. */
static int kprobe_link_missed(struct bpf_link *link, uint64_t *missed, bool *visible)
{
	uint8_t info[128] = { 0 };
	uint32_t len = sizeof(info), type;
	uint64_t n;

	if (!kernel_at_least(6, 7) || bpf_obj_get_info_by_fd(bpf_link__fd(link), info, &len) ||
	    len < LINK_INFO_KPROBE_MISSED + sizeof(n)) {
		*visible = false;
		return 0;
	}
	memcpy(&type, info, sizeof(type)); /* bpf_link_info.type */
	if (type != BPF_LINK_TYPE_PERF_EVENT) {
		*visible = false;
		return 0;
	}
	memcpy(&type, info + LINK_INFO_PERF_EVENT_TYPE, sizeof(type));
	if (type != PERF_EVENT_KPROBE && type != PERF_EVENT_KRETPROBE) {
		*visible = false;
		return 0;
	}
	memcpy(&n, info + LINK_INFO_KPROBE_MISSED, sizeof(n));
	*missed += n;
	return 0;
}

int ct_probe_read_misses(struct ct_probe *p, uint64_t *missed, bool *visible)
{
	struct bpf_program *progs[MAX_LINKS];
	int n = mode_programs(p->skel, p->mode, progs);

	*missed = 0;
	*visible = true;
	for (int i = 0; i < n; i++) {
		struct bpf_prog_info info;
		uint32_t len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len))
			return -errno;
		/* Trampolines and raw tracepoints (5.12+), kprobe programs (6.7+). */
		if (len < offsetof(struct bpf_prog_info, recursion_misses) + sizeof(info.recursion_misses))
			*visible = false;
		*missed += info.recursion_misses;
		if (p->mode == CT_MODE_KPROBE)
			kprobe_link_missed(p->links[i], missed, visible);
	}
	return 0;
}

int ct_probe_delete_netns(struct ct_probe *p, uint64_t cookie, uint32_t ino, uint8_t l4proto)
{
	struct ctstorm_netns_key key = { .netns_cookie = cookie, .netns_ino = ino, .l4proto = l4proto };

	return bpf_map_delete_elem(bpf_map__fd(p->skel->maps.netns_counts), &key) ? -errno : 0;
}

void ct_probe_close(struct ct_probe *p)
{
	if (!p)
		return;
	ring_buffer__free(p->rb);
	for (int i = 0; i < MAX_LINKS; i++)
		bpf_link__destroy(p->links[i]);
	for (int i = 0; i < 2; i++)
		bpf_link__destroy(p->softirq_links[i]);
	ctstorm_bpf__destroy(p->skel);
	pthread_mutex_destroy(&p->sweep_lock);
	free(p);
}

/* The decoder in src/record.ts relies on this layout. */
_Static_assert(sizeof(struct ctstorm_record) == 168, "record layout changed: update src/record.ts");
_Static_assert(offsetof(struct ctstorm_record, comm) == 152, "record layout changed");
_Static_assert(offsetof(struct ctstorm_record, orig) == 56, "record layout changed");
_Static_assert(offsetof(struct ctstorm_record, reply) == 92, "record layout changed");
