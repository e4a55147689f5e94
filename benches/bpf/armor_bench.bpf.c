// SPDX-License-Identifier: GPL-2.0
// The benchmark twin of armor_lsm.bpf.c: the same matching code (armor_match.h) compiled into
// XDP programs, which the host kernel can time with BPF_PROG_TEST_RUN and `repeat`.
// The input sits in `bench_input`, an array map the bench writes once (the packet is ignored:
// copying it in with bpf_xdp_load_bytes costs more per run than some of the matching, and the LSM
// has no such copy). Entry 0 is the path as the LSM's prefix pass reads it, root first:
// [n, (len_1, off_1) .. (len_n, off_n), names...], each name's length (d_name.len) and offset;
// entry 1 is the path's text, for the baseline.
// `armor_bench` runs the LSM's prefix pass (armor_prefixes: every name hashed, the prefix hashes
// extended root first, the directory entries probed at the depths the ruleset's bitmap names;
// the LSM reads each name with bpf_probe_read_kernel where this reads the map, and its dentry
// walk, which only collects the dentries, is not part of the figure), probes the exact entry,
// runs the file glob automaton when the ruleset has one and probes the globs it matches, and
// decides (XDP_DROP = Block).
// `kubearmor_baseline` does what KubeArmor's BPF-LSM enforcer does per path: one lookup of a
// 400-byte {path[200], source[200]} string key at every `/` of the first 64 characters, and
// one of the whole path.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "armor_match.h"

/* The bare raw syscall tracepoints (the syscall filter bench's reference): attached, they do
 * nothing, so what they cost is the tracepoint's own cost. */
SEC("tp_btf/sys_enter")
int BPF_PROG(bare_sys_enter, struct pt_regs *regs, long nr)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(bare_sys_exit, struct pt_regs *regs, long ret)
{
	return 0;
}


#define BENCH_PATH 256

/* Value of `bench_input`: `size` bytes of input (padded: names are read 8 bytes at a time). */
struct bench_input {
	__u32 size;
	__u32 pad;
	char data[BENCH_PATH + ARMOR_NAME_MAX + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bench_input);
} bench_input SEC(".maps");

struct bench_buf {
	__u64 key;
	struct armor_dfa_key dfa_key;
	__u32 dfa_state;
	__u32 dfa_off;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_buf);
} bench_buf SEC(".maps");

/* Slot 0: the hash key. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_config SEC(".maps");

/* The workload under test: what the LSM's workload lookup (by cgroup id, not timed here) finds,
 * its ruleset id and description. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_workload);
} bench_workload SEC(".maps");

struct ka_key {
	char path[200];
	char source[200];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct ka_key);
	__type(value, __u32);
} ka_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ka_key);
} ka_buf SEC(".maps");

static __always_inline struct bench_buf *buf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&bench_buf, &zero);
}

/* What the loop bodies need besides the buffer: the input and the automaton. */
struct bench_ctx {
	const struct bench_input *in;
	const struct armor_dfa *dfa;
};

/* The names are in the input. */
static __always_inline void *armor_comp_src(void *ctx)
{
	return (void *)((struct bench_ctx *)ctx)->in;
}

/* Name d (root first) of the input: where it starts, and its length in *len. */
static __always_inline const char *bench_name(const struct bench_input *in, __u64 d, __u32 *len)
{
	*len = (__u8)in->data[(1 + 2 * d) & (BENCH_PATH - 1)];
	return in->data + (__u8)in->data[(2 + 2 * d) & (BENCH_PATH - 1)];
}

/* Component d (root first): its name's hash. */
static __always_inline int armor_comp_at(void *src, const struct armor_path *p, __u64 d,
					 __u64 key, __u64 *c)
{
	__u32 len;
	const char *name = bench_name(src, d, &len);
	*c = armor_comp_hash(key, name, len);
	return 1;
}

/* Component i through the glob automaton (only when the ruleset has file globs). */
static long bench_dfa(__u32 i, void *ctx)
{
	const struct bench_ctx *bc = ctx;
	const struct bench_input *in = bc->in;
	struct bench_buf *b = buf();
	if (!in || !b || !bc->dfa || !b->dfa_state)
		return 1;
	__u32 len;
	const char *name = bench_name(in, i, &len);
	b->dfa_state = armor_dfa_component(bc->dfa, b->dfa_state, name, len);
	return 0;
}

static long glob_match(__u32 i, void *ctx)
{
	struct bench_buf *b = buf();
	if (!b)
		return 1;
	struct armor_dfa *d = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key);
	if (!d)
		return 1;
	armor_check(b->dfa_key.ruleset, ARMOR_KIND_FILE_GLOB,
		    d->matches[(b->dfa_off + i) & (ARMOR_DFA_MATCHES - 1)], 0);
	return 0;
}

SEC("xdp")
int armor_bench(struct xdp_md *ctx)
{
	struct bench_buf *b = buf();
	struct armor_state *st = armor_state();
	struct armor_path *p = armor_path();
	__u32 k0 = 0;
	const struct bench_input *in = bpf_map_lookup_elem(&bench_input, &k0);
	if (!b || !st || !p || !in)
		return XDP_ABORTED;
	__u64 *key = bpf_map_lookup_elem(&bench_config, &k0);
	const struct armor_workload *w = bpf_map_lookup_elem(&bench_workload, &k0);
	if (!key || !w || !w->ruleset)
		return XDP_ABORTED;
	__u32 id = w->ruleset;
	const struct armor_ruleset *rs = &w->rs;
	__u32 n = (__u8)in->data[0];
	armor_slots_init(&st->op.slots);
	st->op.ruleset = id;
	st->op.category = ARMOR_CAT_FILE;
	st->op.uid = 0;
	st->op.owner = 0;
	st->op.owner_known = 1;
	st->op.write = 0;
	st->op.source = 0;
	b->key = *key;
	struct bench_ctx bc = {.in = in, .dfa = NULL};
	p->n = n;
	p->ruleset = id;
	p->dir_bits = rs->dir_depths[1];
	p->dir_kind = ARMOR_KIND_FILE_DIR;
	p->lookups = 1;
	armor_prefixes(p, b->key, &bc);
	armor_check(id, ARMOR_KIND_FILE_PATH, p->hash, 0);
	b->dfa_key.ruleset = id;
	b->dfa_key.category = ARMOR_CAT_FILE;
	b->dfa_state = (rs->flags & ARMOR_RS_GLOB(ARMOR_CAT_FILE)) ? ARMOR_DFA_START : 0;
	if (b->dfa_state) {
		bc.dfa = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key);
		bpf_loop(n, bench_dfa, &bc, 0);
		struct armor_dfa *d = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key);
		if (d && b->dfa_state) {
			__u32 acc = d->accept[b->dfa_state & (ARMOR_DFA_STATES - 1)];
			b->dfa_off = acc >> 16;
			if (acc & 0xffff)
				bpf_loop(acc & 0xffff, glob_match, NULL, 0);
		}
	}
	__u32 rule = 0;
	return armor_verdict(&st->op, rs, &rule) == ARMOR_ACTION_BLOCK ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int kubearmor_baseline(struct xdp_md *ctx)
{
	__u32 zero = 0, one = 1;
	const struct bench_input *in = bpf_map_lookup_elem(&bench_input, &one);
	struct ka_key *k = bpf_map_lookup_elem(&ka_buf, &zero);
	if (!in || !k)
		return XDP_ABORTED;
	__u32 size = in->size & 0x7f;
	if (size < 1)
		return XDP_ABORTED;
	int hit = 0;
	/* Every `/` position of the first 64 characters: the prefix up to and including it. */
	for (__u32 i = 1; i < 64; i++) {
		if (i >= size)
			break;
		if (in->data[i] != '/')
			continue;
		__builtin_memset(k, 0, sizeof(*k));
		bpf_probe_read_kernel(k->path, (i + 1) & 0xff, in->data);
		if (bpf_map_lookup_elem(&ka_rules, k))
			hit = 1;
	}
	__builtin_memset(k, 0, sizeof(*k));
	bpf_probe_read_kernel(k->path, size & 0xff, in->data);
	if (bpf_map_lookup_elem(&ka_rules, k))
		hit = 1;
	return hit ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

/* The harness's own cost: a program that decides nothing. */
SEC("xdp")
int bench_null(struct xdp_md *ctx)
{
	return XDP_PASS;
}
