// SPDX-License-Identifier: GPL-2.0
// The benchmark twin of armor_lsm.bpf.c: the same matching code (armor_match.h) compiled into
// XDP programs, which the host kernel can time with BPF_PROG_TEST_RUN and `repeat`.
// `armor_bench` takes the path as the LSM's dentry walk reads it — the component lengths
// (d_name.len) then the names, root first: packet = [n, len_1 .. len_n, names...] — hashes
// every name into the component ring (in the LSM this happens inside the dentry walk, one name
// per step, so the walk's own steps are not part of the figure), runs the same prefix pass
// (armor_prefixes: the full path hash and the directory entries at the depths the ruleset's
// bitmap names), probes the exact entry, runs the file glob automaton when the ruleset has one
// and probes the globs it matches, and decides (XDP_DROP = Block).
// `kubearmor_baseline` does what KubeArmor's BPF-LSM enforcer does per path: one lookup of a
// 400-byte {path[200], source[200]} string key at every `/` of the first 64 characters, and
// one of the whole path.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "armor_match.h"


#define BENCH_PATH 256
#define BENCH_COMPONENTS 32

struct bench_buf {
	char path[BENCH_PATH + ARMOR_NAME_MAX + 8];
	__u16 start[BENCH_COMPONENTS];
	__u16 len[BENCH_COMPONENTS];
	__u32 n;
	__u64 hash;
	__u64 key;
	__u32 depth_total;
	__u32 off;
	__u64 bits;
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

/* Slot 0: the hash key; slot 1: the ruleset id under test. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} bench_config SEC(".maps");

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

/* What the loop bodies need besides the buffer: the ruleset (its filter) and the automaton. */
struct bench_ctx {
	const struct armor_ruleset_val *rv;
	const struct armor_dfa *dfa;
};

#define BENCH_NAMES_CHUNK 8

/* Components i * 8 .. i * 8 + 7 (root first): the hash of each name, pushed into the path's
 * ring leaf first, as the LSM's dentry walk pushes them. */
static long bench_names(__u32 i, void *ctx)
{
	struct bench_buf *b = buf();
	struct armor_path *p = armor_path();
	if (!b || !p)
		return 1;
	for (__u32 j = 0; j < BENCH_NAMES_CHUNK; j++) {
		__u32 d = i * BENCH_NAMES_CHUNK + j;
		if (d >= b->n)
			return 1;
		__u32 len = (__u8)b->path[(1 + d) & (BENCH_PATH - 1)];
		__u64 c = armor_comp_hash(b->key, b->path + (b->off & (BENCH_PATH - 1)), len);
		p->comp[(b->n - 1 - d) & ARMOR_COMPS_MASK] = c;
		b->off += len;
	}
	return 0;
}

/* Component i through the glob automaton (only when the ruleset has file globs). */
static long bench_dfa(__u32 i, void *ctx)
{
	const struct bench_ctx *bc = ctx;
	struct bench_buf *b = buf();
	if (!b || !bc->dfa || !b->dfa_state)
		return 1;
	__u32 len = (__u8)b->path[(1 + i) & (BENCH_PATH - 1)];
	b->dfa_state = armor_dfa_component(bc->dfa, b->dfa_state,
					   b->path + (b->off & (BENCH_PATH - 1)), len);
	b->off += len;
	return 0;
}

static long glob_match(__u32 i, void *ctx)
{
	const struct armor_ruleset_val *const *rv = ctx;
	struct bench_buf *b = buf();
	if (!b)
		return 1;
	struct armor_dfa *d = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key);
	if (!d)
		return 1;
	armor_check(*rv, ARMOR_KIND_FILE_GLOB,
		    d->matches[(b->dfa_off + i) & (ARMOR_DFA_MATCHES - 1)], 0);
	return 0;
}

SEC("xdp")
int armor_bench(struct xdp_md *ctx)
{
	struct bench_buf *b = buf();
	struct armor_state *st = armor_state();
	struct armor_path *p = armor_path();
	if (!b || !st || !p)
		return XDP_ABORTED;
	__u64 size = ctx->data_end - ctx->data;
	/* Up to 255 bytes; the asm keeps the bound where the verifier sees it. */
	asm volatile("%0 &= 0xff" : "+r"(size));
	if (size < 2 || bpf_xdp_load_bytes(ctx, 0, b->path, size))
		return XDP_ABORTED;
	__u32 k0 = 0, k1 = 1;
	__u64 *key = bpf_map_lookup_elem(&bench_config, &k0);
	__u64 *rsid = bpf_map_lookup_elem(&bench_config, &k1);
	if (!key || !rsid)
		return XDP_ABORTED;
	__u32 id = *rsid;
	const struct armor_ruleset_val *rv = bpf_map_lookup_elem(&armor_rulesets, &id);
	if (!rv)
		return XDP_ABORTED;
	const struct armor_ruleset *rs = &rv->rs;
	__u32 n = (__u8)b->path[0];
	armor_slots_init(&st->op.slots);
	st->op.ruleset = id;
	st->op.category = ARMOR_CAT_FILE;
	st->op.uid = 0;
	st->op.owner = 0;
	st->op.owner_known = 1;
	st->op.write = 0;
	st->op.source = 0;
	b->key = *key;
	b->n = n;
	b->off = 1 + n;
	bpf_loop((n + BENCH_NAMES_CHUNK - 1) / BENCH_NAMES_CHUNK, bench_names, NULL, 0);
	p->n = n;
	p->dir_bits = rs->dir_depths[1];
	p->dir_kind = ARMOR_KIND_FILE_DIR;
	p->lookups = 1;
	armor_prefixes(p, rv, b->key);
	armor_check(rv, ARMOR_KIND_FILE_PATH, p->hash, 0);
	b->dfa_key.ruleset = id;
	b->dfa_key.category = ARMOR_CAT_FILE;
	b->dfa_state = (rs->flags & ARMOR_RS_GLOB(ARMOR_CAT_FILE)) ? ARMOR_DFA_START : 0;
	if (b->dfa_state) {
		struct bench_ctx bc = {
			.rv = rv,
			.dfa = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key),
		};
		b->off = 1 + n;
		bpf_loop(n, bench_dfa, &bc, 0);
		struct armor_dfa *d = bpf_map_lookup_elem(&armor_dfas, &b->dfa_key);
		if (d && b->dfa_state) {
			__u32 acc = d->accept[b->dfa_state & (ARMOR_DFA_STATES - 1)];
			b->dfa_off = acc >> 16;
			if (acc & 0xffff)
				bpf_loop(acc & 0xffff, glob_match, &rv, 0);
		}
	}
	__u32 rule = 0;
	return armor_verdict(&st->op, rs, &rule) == ARMOR_ACTION_BLOCK ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int kubearmor_baseline(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct bench_buf *b = buf();
	struct ka_key *k = bpf_map_lookup_elem(&ka_buf, &zero);
	if (!b || !k)
		return XDP_ABORTED;
	__u64 size = ctx->data_end - ctx->data;
	asm volatile("%0 &= 0x7f" : "+r"(size));
	if (size < 1 || bpf_xdp_load_bytes(ctx, 0, b->path, size))
		return XDP_ABORTED;
	int hit = 0;
	/* Every `/` position of the first 64 characters: the prefix up to and including it. */
	for (__u32 i = 1; i < 64; i++) {
		if (i >= size)
			break;
		if (b->path[i] != '/')
			continue;
		__builtin_memset(k, 0, sizeof(*k));
		bpf_probe_read_kernel(k->path, (i + 1) & 0xff, b->path);
		if (bpf_map_lookup_elem(&ka_rules, k))
			hit = 1;
	}
	__builtin_memset(k, 0, sizeof(*k));
	bpf_probe_read_kernel(k->path, size & 0xff, b->path);
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
