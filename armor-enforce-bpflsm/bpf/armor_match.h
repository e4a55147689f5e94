/* SPDX-License-Identifier: GPL-2.0 */
/* The matching code shared by the LSM programs (armor_lsm.bpf.c) and the XDP benchmark twin
 * (armor_bench.bpf.c): the keyed component hash, the rule map, the chain probe and the verdict.
 * src/hash.rs and src/model.rs are the user-space mirror; keep them in step. */
#ifndef ARMOR_MATCH_H
#define ARMOR_MATCH_H

#include "armor_abi.h"

#define ARMOR_P1 0x9e3779b97f4a7c15ULL
#define ARMOR_P2 0xc2b2ae3d27d4eb4fULL
#define ARMOR_P3 0x165667b19e3779f9ULL
#define ARMOR_NAME_MAX 256     /* a component is at most NAME_MAX (255) bytes */
#define ARMOR_CHAIN_MAX 32     /* entries per key: 3 actions x 8 flag sets at most */

/* Slot indices of `struct armor_slots`. */
#define ARMOR_SLOT_BLOCK_SRC 0
#define ARMOR_SLOT_BLOCK_ANY 1
#define ARMOR_SLOT_ALLOW_SRC 2
#define ARMOR_SLOT_ALLOW_ANY 3
#define ARMOR_SLOT_AUDIT 4
#define ARMOR_NSLOTS 5
#define ARMOR_NO_RANK 0xffffffffu

/* max_entries of every sized map is set by the loader from the configuration. */

/* The rule table (armor_abi.h): max_entries = armor_table_mask + 1, a power of two. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_slot);
} armor_table SEC(".maps");

/* Set by the loader (read-only data: a constant for the verifier). */
const volatile __u32 armor_table_mask = 0;

/* Entries that are not in the table: chain entries (seq >= 1) and overflow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct armor_rule_key);
	__type(value, struct armor_rule_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} armor_rules SEC(".maps");

/* The filter (armor_abi.h): max_entries = (armor_filter_mask + 1) / 64 words. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} armor_filter SEC(".maps");

/* Set by the loader: the filter's bits - 1 (a power of two minus one, at least 63). */
const volatile __u32 armor_filter_mask = 63;

/* Glob automata: one per ruleset and category that has globs (src/dfa.rs, struct armor_dfa). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct armor_dfa_key);
	__type(value, struct armor_dfa);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} armor_dfas SEC(".maps");

/* One byte through the automaton (src/abi.rs `DfaVal::step` is the mirror). */
static __always_inline __u32 armor_dfa_step(const struct armor_dfa *d, __u32 state, __u8 b)
{
	__u32 cls = d->classes[b];
	__u32 cell = (state * d->nclasses + cls) & (ARMOR_DFA_CELLS - 1);
	return d->next[cell];
}

/* The automaton walk over one component's bytes, driven by bpf_loop (verified once, however
 * long the name), eight bytes per iteration: `name` holds ARMOR_NAME_MAX + 8 readable bytes. */
#define ARMOR_DFA_CHUNK 8

struct armor_dfa_walk {
	const struct armor_dfa *dfa;
	const char *name;
	__u32 state;
	__u32 len;
};

static long armor_dfa_chunk(__u32 i, void *ctx)
{
	struct armor_dfa_walk *w = ctx;
	__u32 at = ((i + 1) * ARMOR_DFA_CHUNK) & (ARMOR_NAME_MAX - 1);
	__u32 state = w->state;
	for (__u32 k = 0; k < ARMOR_DFA_CHUNK; k++) {
		if (at + k >= w->len || !state)
			break;
		state = armor_dfa_step(w->dfa, state, w->name[at + k]);
	}
	w->state = state;
	return state == 0;
}

/* '/' and then `len` bytes of `name`: the first chunk inline (most names are short), the rest
 * through bpf_loop. */
static __always_inline __u32 armor_dfa_component(const struct armor_dfa *d, __u32 state,
						  const char *name, __u32 len)
{
	state = armor_dfa_step(d, state, '/');
	for (__u32 k = 0; k < ARMOR_DFA_CHUNK; k++) {
		if (k >= len || !state)
			return state;
		state = armor_dfa_step(d, state, name[k]);
	}
	if (!state || len <= ARMOR_DFA_CHUNK)
		return state;
	struct armor_dfa_walk w = {.dfa = d, .name = name, .state = state, .len = len};
	bpf_loop((len - 1) / ARMOR_DFA_CHUNK, armor_dfa_chunk, &w, 0);
	return w.state;
}

struct armor_slots {
	__u32 rank[ARMOR_NSLOTS];
	__u32 rule[ARMOR_NSLOTS];
};

/* Entries with ARMOR_F_ARGS of one operation, decided after the probes (their argument check
 * reads the rule's argument entries, which a probe in progress cannot). */
#define ARMOR_PENDING 16

/* What one operation brings to the probes. */
struct armor_op {
	struct armor_slots slots;
	__u32 ruleset;
	__u32 uid;
	__u32 owner;
	__u8 owner_known;
	__u8 write;
	__u8 category;
	__u8 npend;   /* pending ARMOR_F_ARGS entries */
	__u64 source; /* hash of the acting executable, 0 = not needed or unknown */
	__u32 pend_rule[ARMOR_PENDING];
	__u32 pend_rank[ARMOR_PENDING];
	__u8 pend_action[ARMOR_PENDING];
	__u8 pend_flags[ARMOR_PENDING];
	__u8 pend_spec[ARMOR_PENDING];
	__u8 pad[4];
};

static __always_inline __u64 armor_fix(__u64 h)
{
	return h ? h : 1;
}

static __always_inline __u64 armor_extend(__u64 prefix, __u64 c)
{
	__u64 h = (prefix ^ c) * ARMOR_P2;
	h ^= h >> 32;
	h *= ARMOR_P3;
	h ^= h >> 29;
	return armor_fix(h);
}

/* One component into a path's prefix hash (src/hash.rs `step` is the mirror): one multiply and
 * one shift; `c` is already the keyed hash of the component. */
static __always_inline __u64 armor_step(__u64 prefix, __u64 c)
{
	__u64 h = (prefix ^ c) * ARMOR_P2;
	h ^= h >> 32;
	return armor_fix(h);
}

static __always_inline __u64 armor_root(__u64 key)
{
	return armor_fix(armor_extend(key ^ ARMOR_P3, ARMOR_P2));
}

/* The mix of a rule key without its source (src/hash.rs `key_hash` is the mirror); the table
 * tag extends it by the source. */
static __always_inline __u64 armor_key_hash(__u32 ruleset, __u8 kind, __u64 target)
{
	return armor_extend((((__u64)ruleset << 8) | kind) * ARMOR_P1, target);
}

/* 0 when no entry of `ruleset` can have (kind, target), whatever its source. The key's target
 * (a keyed hash already, or a small number) is mixed with its ruleset and kind by one multiply
 * into v; both of its bits lie in one word, (v >> 32) % WORDS, at positions v % 64 and
 * (v >> 6) % 64: one array read per test (src/hash.rs `filter_bits` is the mirror). */
static __always_inline int armor_maybe(__u32 ruleset, __u8 kind, __u64 target)
{
	__u64 v = target ^ ((((__u64)ruleset << 8) | kind) * ARMOR_P1);
	__u32 word = (v >> 32) & (armor_filter_mask >> 6);
	const __u64 *w = bpf_map_lookup_elem(&armor_filter, &word);
	return w && ((*w >> (v & 63)) & (*w >> ((v >> 6) & 63)) & 1);
}

/* One full word into a component's hash. */
static __always_inline __u64 armor_word(__u64 h, __u64 w)
{
	h = (h ^ w) * ARMOR_P1;
	return h ^ (h >> 29);
}

/* The full words of a long name (past the second), through bpf_loop. */
struct armor_words {
	const char *buf;
	__u64 h;
};

static long armor_word_at(__u32 i, void *ctx)
{
	struct armor_words *w = ctx;
	w->h = armor_word(w->h, *(const __u64 *)(w->buf + ((i + 2) * 8 & (ARMOR_NAME_MAX - 1))));
	return 0;
}

/* The hash of `len` (< ARMOR_NAME_MAX) bytes at `buf` (which holds ARMOR_NAME_MAX + 8 readable
 * bytes), eight at a time: the full words, then the last one masked to its bytes. Names of up to
 * 24 bytes take no loop at all: the prefix pass hashes eight names per step, and a loop here
 * (one verifier pass per possible length, eight times over) made the 6.1 verifier give up. */
static __always_inline __u64 armor_comp_hash(__u64 key, const char *buf, __u32 len)
{
	__u64 h = key ^ ((__u64)len * ARMOR_P1);
	if (!len)
		return h;
	__u32 last = ((len - 1) / 8) & (ARMOR_NAME_MAX / 8 - 1);
	if (last > 0)
		h = armor_word(h, *(const __u64 *)buf);
	if (last > 1)
		h = armor_word(h, *(const __u64 *)(buf + 8));
	if (last > 2) {
		struct armor_words w = {.buf = buf, .h = h};
		bpf_loop(last - 2, armor_word_at, &w, 0);
		h = w.h;
	}
	__u64 w = *(const __u64 *)(buf + last * 8);
	__u32 rest = len - last * 8;
	if (rest < 8)
		w &= (1ULL << (rest * 8)) - 1;
	return armor_word(h, w);
}

/* The target of an inode entry: the kernel's s_dev ((major << 20) | minor) and i_ino. */
static __always_inline __u64 armor_inode_target(__u32 dev, __u64 ino)
{
	return armor_extend(armor_fix(ino), dev);
}

static __always_inline void armor_slots_init(struct armor_slots *s)
{
	for (int i = 0; i < ARMOR_NSLOTS; i++) {
		s->rank[i] = ARMOR_NO_RANK;
		s->rule[i] = 0;
	}
}

/* Per-CPU state of one decision: the operation and the probe in progress. */
struct armor_state {
	struct armor_op op;
	struct armor_rule_key key;
	__u32 recursive_only;
	__u32 spec;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_state);
} armor_state_map SEC(".maps");

static __always_inline struct armor_state *armor_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&armor_state_map, &zero);
}

/* A covering entry into its slot of `s`: the best rank of its action and specificity. */
static __always_inline void armor_slots_take(struct armor_slots *s, __u8 action, __u32 spec,
					     __u32 rank, __u32 rule)
{
	__u32 slot;
	if (action == ARMOR_ACTION_ALLOW)
		slot = spec ? ARMOR_SLOT_ALLOW_SRC : ARMOR_SLOT_ALLOW_ANY;
	else if (action == ARMOR_ACTION_AUDIT)
		slot = ARMOR_SLOT_AUDIT;
	else
		slot = spec ? ARMOR_SLOT_BLOCK_SRC : ARMOR_SLOT_BLOCK_ANY;
	if (slot >= ARMOR_NSLOTS)
		return;
	if (rank < s->rank[slot]) {
		s->rank[slot] = rank;
		s->rule[slot] = rule;
	}
}

/* A covering entry into the operation's slots. */
static __always_inline void armor_take(struct armor_state *st, __u8 action, __u32 spec,
				       __u32 rank, __u32 rule)
{
	armor_slots_take(&st->op.slots, action, spec, rank, rule);
}

/* Applies one entry to the operation: the qualifiers, then the slot. An entry whose rule has
 * allowedArgs waits for the argument check (ARMOR_PENDING); past that many, its arguments count
 * as not listed (a Block covers the exec, an Allow does not). */
static __always_inline void armor_consider(struct armor_state *st, const struct armor_rule_val *v)
{
	if (st->recursive_only && !(v->flags & ARMOR_F_RECURSIVE))
		return;
	if (v->flags & ARMOR_F_ARGS) {
		__u32 n = st->op.npend;
		if (n < ARMOR_PENDING) {
			st->op.pend_rule[n] = v->rule;
			st->op.pend_rank[n] = v->rank;
			st->op.pend_action[n] = v->action;
			st->op.pend_flags[n] = v->flags;
			st->op.pend_spec[n] = st->spec;
			st->op.npend = n + 1;
		} else if (v->action != ARMOR_ACTION_ALLOW) {
			armor_take(st, v->action, st->spec, v->rank, v->rule);
		}
		return;
	}
	int covered = 1;
	if (v->flags & (ARMOR_F_READ_ONLY | ARMOR_F_OWNER_ONLY)) {
		int read_ok = !((v->flags & ARMOR_F_READ_ONLY) && st->op.write);
		int owner_ok = !(v->flags & ARMOR_F_OWNER_ONLY) ||
			       (st->op.owner_known && st->op.owner == st->op.uid);
		int permitted = read_ok && owner_ok;
		covered = v->action == ARMOR_ACTION_ALLOW ? permitted : !permitted;
	}
	if (!covered)
		return;
	armor_take(st, v->action, st->spec, v->rank, v->rule);
}

/* Chain entry seq = i + 1 of the key in st->key (seq 0 is handled inline by armor_probe). */
static long armor_chain_entry(__u32 i, void *ctx)
{
	struct armor_state *st = armor_state();
	if (!st)
		return 1;
	st->key.seq = i + 1;
	struct armor_rule_val *v = bpf_map_lookup_elem(&armor_rules, &st->key);
	if (!v)
		return 1;
	armor_consider(st, v);
	return 0;
}

/* The table tag of a rule key whose armor_key_hash is `u` (src/hash.rs `tag` is the mirror):
 * never EMPTY or DELETED. */
static __always_inline __u64 armor_tag(__u64 u, __u64 source)
{
	__u64 h = armor_extend(u, source ^ ARMOR_P2);
	return h > ARMOR_TAG_DELETED ? h : h + 2;
}

/* st->key = the seq 0 key of (operation's ruleset, kind, target, source). */
static __always_inline void armor_key_set(struct armor_state *st, __u8 kind, __u64 target,
					  __u64 source)
{
	st->key.ruleset = st->op.ruleset;
	st->key.kind = kind;
	st->key.seq = 0;
	st->key.pad = 0;
	st->key.target = target;
	st->key.source = source;
}

/* The seq 0 entry of the key (kind, target, source) of the operation's ruleset, whose
 * armor_key_hash is `u`: from the table (within ARMOR_WINDOW slots of the tag's home slot, no
 * helper call), else from `armor_rules` when the window was full (src/table.rs `Table::find` is
 * the mirror). */
static __always_inline const struct armor_rule_val *armor_first(struct armor_state *st, __u8 kind,
								__u64 target, __u64 source,
								__u64 u)
{
	__u64 tag = armor_tag(u, source);
	__u32 mask = armor_table_mask;
	for (__u32 k = 0; k < ARMOR_WINDOW; k++) {
		__u32 idx = ((__u32)tag + k) & mask;
		const struct armor_slot *sl = bpf_map_lookup_elem(&armor_table, &idx);
		if (!sl || sl->tag == ARMOR_TAG_EMPTY)
			return NULL;
		if (sl->tag == tag)
			return &sl->val;
	}
	armor_key_set(st, kind, target, source);
	return bpf_map_lookup_elem(&armor_rules, &st->key);
}

/* Every entry of one key of the operation's ruleset, for the operation's source and for "any
 * source" (a global function: verified once, not at every call site; inlined into the prefix
 * pass, the 6.1 verifier takes three times as long over the LSM programs). Most keys hold one
 * entry, found in the table; the entries past it (seq >= 1) come from `armor_rules` through
 * bpf_loop. */
__noinline int armor_probe(__u8 kind, __u64 target, int recursive_only)
{
	struct armor_state *st = armor_state();
	if (!st)
		return 0;
	__u64 u = armor_key_hash(st->op.ruleset, kind, target);
	st->recursive_only = recursive_only;
	for (int spec = 1; spec >= 0; spec--) {
		__u64 source = spec ? st->op.source : 0;
		if (spec && !source)
			continue;
		st->spec = spec;
		const struct armor_rule_val *first = armor_first(st, kind, target, source, u);
		if (!first)
			continue;
		armor_consider(st, first);
		__u32 n = first->count;
		if (n > ARMOR_CHAIN_MAX)
			n = ARMOR_CHAIN_MAX;
		if (n > 1) {
			armor_key_set(st, kind, target, source);
			bpf_loop(n - 1, armor_chain_entry, NULL, 0);
		}
	}
	return 0;
}

/* armor_probe behind the filter, for the operation's ruleset (`ruleset` is st->op.ruleset). */
static __always_inline void armor_check(__u32 ruleset, __u8 kind, __u64 target,
					int recursive_only)
{
	if (!armor_maybe(ruleset, kind, target))
		return;
	armor_probe(kind, target, recursive_only);
}

/* A path as the matching code sees it: its components, root first, hashed and extended into
 * the prefix hashes by one pass (armor_prefixes), which probes the directory entries on the
 * way. The walk (the LSM's dentry walk, the benchmark's input) only counts the components and
 * keeps what it needs to read their names again, root first: the program that includes this
 * header defines armor_comp_at, which hashes component d. */
#define ARMOR_COMPS 2048 /* a walk deeper than this keeps the root-most components */
#define ARMOR_COMPS_MASK (ARMOR_COMPS - 1)
#define ARMOR_PREFIX_CHUNK 8 /* components per bpf_loop iteration of the prefix pass */

struct armor_path {
	__u64 hash;     /* the prefix hash so far; after the pass, the full path's */
	__u64 dir_bits; /* bit d: the ruleset has directory entries at depth d */
	__u64 key;      /* the hash key */
	__u64 leaf;     /* the leaf's own component hash (set when the pass reaches it) */
	__u32 n;        /* components the walk found */
	__u32 resolved; /* components extended into `hash` (root first) */
	__u32 ruleset;  /* the operation's ruleset (the directory probes) */
	__u8 dir_kind;
	__u8 lookups;   /* probe the directory entries */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_path);
} armor_path_map SEC(".maps");

static __always_inline struct armor_path *armor_path(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&armor_path_map, &zero);
}

/* The root-most components the walk kept. */
static __always_inline __u32 armor_kept(const struct armor_path *p)
{
	return p->n < ARMOR_COMPS ? p->n : ARMOR_COMPS;
}

/* Defined by the including program: where its names are (from the `ctx` it gave
 * armor_prefixes; NULL stops the pass), read once per step of the pass. */
static __always_inline void *armor_comp_src(void *ctx);

/* Defined by the including program: the hash (armor_comp_hash with `key`) of component d, root
 * first, of the walk in p, from `src`. 0 when the name cannot be read: the pass stops there and
 * the path stays incomplete. It must not carry state from one component to the next (a running
 * offset, say): the verifier would then tell the step's paths apart by that value and stop
 * merging them. */
static __always_inline int armor_comp_at(void *src, const struct armor_path *p, __u64 d,
					 __u64 key, __u64 *c);

/* Components i * ARMOR_PREFIX_CHUNK .. + ARMOR_PREFIX_CHUNK - 1 (root first): hash the name,
 * extend the prefix hash, probe the directory entry of the prefix when the ruleset has entries
 * at that depth. The state is kept in locals (64-bit: no zero extensions) and written back
 * once. */
static long armor_prefix_chunk(__u32 i, void *ctx)
{
	struct armor_path *p = armor_path();
	void *src = armor_comp_src(ctx);
	if (!p || !src)
		return 1;
	__u64 n = p->n;
	__u64 kept = armor_kept(p);
	__u64 h = p->hash;
	__u64 key = p->key;
	__u64 bits = p->lookups ? p->dir_bits : 0;
	__u32 ruleset = p->ruleset;
	__u8 kind = p->dir_kind;
	__u64 first = (__u64)i * ARMOR_PREFIX_CHUNK;
	__u64 d = first;
	__u64 c = 0;
	long stop = 0;
#pragma unroll
	for (int j = 0; j < ARMOR_PREFIX_CHUNK; j++) {
		if (d >= kept || !armor_comp_at(src, p, d, key, &c)) {
			stop = 1;
			break;
		}
		h = armor_step(h, c);
		d++;
		/* d is now the prefix's depth */
		if (bits & (1ULL << (d < 63 ? d : 63)))
			armor_check(ruleset, kind, h, d + 1 < n);
	}
	/* The last component hashed was the leaf. */
	if (d == n && d > first)
		p->leaf = c;
	p->hash = h;
	p->resolved = d;
	return stop;
}

/* The prefix pass: the root's directory entry, then every kept component (with p->lookups, the
 * directory entries of p->ruleset at the depths p->dir_bits names). Afterwards p->hash is the
 * full path's hash and p->leaf the leaf's own hash when p->resolved == p->n. */
static __always_inline void armor_prefixes(struct armor_path *p, __u64 key, void *ctx)
{
	p->hash = armor_root(key);
	p->key = key;
	p->resolved = 0;
	if (p->lookups && (p->dir_bits & 1))
		armor_check(p->ruleset, p->dir_kind, p->hash, 1 < p->n);
	__u32 kept = armor_kept(p);
	if (kept)
		bpf_loop((kept + ARMOR_PREFIX_CHUNK - 1) / ARMOR_PREFIX_CHUNK, armor_prefix_chunk,
			 ctx, 0);
}

/* The verdict: ARMOR_ACTION_{ALLOW,AUDIT,BLOCK}; *rule = the reported rule or
 * ARMOR_RULE_POSTURE. */
static __always_inline int armor_slots_verdict(const struct armor_slots *s,
					       const struct armor_ruleset *rs, __u8 category,
					       __u32 *rule);

static __always_inline int armor_verdict(const struct armor_op *op, const struct armor_ruleset *rs,
					 __u32 *rule)
{
	return armor_slots_verdict(&op->slots, rs, op->category, rule);
}

/* The verdict of the probed slots `s` for an operation of `category`. */
static __always_inline int armor_slots_verdict(const struct armor_slots *s,
					       const struct armor_ruleset *rs, __u8 category,
					       __u32 *rule)
{
	int has_audit = s->rank[ARMOR_SLOT_AUDIT] != ARMOR_NO_RANK;
	if (s->rank[ARMOR_SLOT_BLOCK_SRC] != ARMOR_NO_RANK) {
		*rule = s->rule[ARMOR_SLOT_BLOCK_SRC];
		return ARMOR_ACTION_BLOCK;
	}
	if (s->rank[ARMOR_SLOT_ALLOW_SRC] != ARMOR_NO_RANK)
		goto allowed;
	if (s->rank[ARMOR_SLOT_BLOCK_ANY] != ARMOR_NO_RANK) {
		*rule = s->rule[ARMOR_SLOT_BLOCK_ANY];
		return ARMOR_ACTION_BLOCK;
	}
	if (s->rank[ARMOR_SLOT_ALLOW_ANY] != ARMOR_NO_RANK)
		goto allowed;
	__u32 c = category & 3;
	if (rs->allow_list[c]) {
		if (rs->posture[c]) {
			*rule = ARMOR_RULE_POSTURE;
			return ARMOR_ACTION_BLOCK;
		}
		*rule = has_audit ? s->rule[ARMOR_SLOT_AUDIT] : ARMOR_RULE_POSTURE;
		return ARMOR_ACTION_AUDIT;
	}
	if (has_audit) {
		*rule = s->rule[ARMOR_SLOT_AUDIT];
		return ARMOR_ACTION_AUDIT;
	}
	*rule = ARMOR_RULE_POSTURE;
	return ARMOR_ACTION_ALLOW;
allowed:
	if (has_audit) {
		*rule = s->rule[ARMOR_SLOT_AUDIT];
		return ARMOR_ACTION_AUDIT;
	}
	*rule = ARMOR_RULE_POSTURE;
	return ARMOR_ACTION_ALLOW;
}

#endif
