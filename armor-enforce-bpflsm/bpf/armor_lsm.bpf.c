// SPDX-License-Identifier: GPL-2.0
// armor's BPF-LSM enforcer: one program per hook, all driven by the maps of armor_match.h.
// Each hook finds the workload of the current task (the nearest registered cgroup v2 ancestor,
// else the host entry), resolves the operation's path by one dentry walk to the mount-namespace
// root (reading and hashing every name once, leaf to root), extends the component hashes root to
// leaf into every prefix's hash (probing the directory entries), probes the rule map and returns
// -EPERM on Block. The path's text is only built for an alert.
// Alerts (Block, and Audit passes) go through one ring buffer, rate-limited per workload.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "armor_match.h"

#define EPERM 1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define FMODE_NOACCOUNT 0x20000000
#define __FMODE_EXEC 0x20 /* in f_flags */
#define SOCK_TYPE_MASK 0xf
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58

#define ARMOR_WALK_MAX (1 << 16)  /* dentries + mount crossings visited by one walk */
#define ARMOR_PROT_EXEC 0x4
#define ARMOR_VM_EXEC 0x4
#define ARMOR_DETAIL_MAP 8 /* process: the file was mapped executable, not executed */
#define ARMOR_DETAIL_HELD 16 /* file: a read or write through a descriptor already held */
#define ARMOR_DETAIL_OPEN 32 /* file: an open (the presets look at procfs entries) */
#define ARMOR_PROC_SUPER_MAGIC 0x9fa0
#define ARMOR_NR_EXECVE 59 /* x86_64 */
#define ARMOR_NR_EXECVEAT 322
/* fs/mount.h: the namespace of the kernel's own mounts (pipes, sockets, anonymous inodes,
 * memfd, namespace files). */
#define ARMOR_MNT_NS_INTERNAL ((void *)-22L)

/* Not preallocated: an update links a new element and frees the old one after every program
 * that may hold it has finished (RCU), so a decision reads one workload's record whole, never a
 * mix of the old and the new value or another workload's reused element. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct armor_workload);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} armor_workloads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_config);
} armor_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ARMOR_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} armor_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct armor_rate);
} armor_rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} armor_alerts SEC(".maps");

/* Files opened while a ruleset was active: file pointer -> ruleset id at open. file_permission
 * decides again only for files opened before (absent) or under another ruleset. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} armor_files SEC(".maps");

/* The walk's own state; the component count, the prefix hash and the leaf's hash are in
 * `struct armor_path` (armor_match.h). */
struct armor_scratch {
	struct dentry *stack[ARMOR_COMPS]; /* the dentry of every kept component, leaf first */
	char name[ARMOR_NAME_MAX + 8];
	char path[2 * ARMOR_NAME_MAX + 8];
	struct armor_ruleset rs;
	struct armor_alert alert;
	/* walk state */
	struct dentry *dentry;
	struct mount *mnt;
	struct mount *root_mnt;
	__u64 key;
	__u32 path_len;
	__u8 done;
	__u8 truncated;
	__u8 internal;
	__u8 kernel_internal; /* internal, on a mount of the kernel's own (a pipe, a socket) */
	__u8 text_done; /* s->path holds the walk's text */
	__u8 category;
	/* glob automaton walk */
	struct armor_dfa_key dfa_key;
	__u32 dfa_state;
	__u32 dfa_off;
	__u8 dfa_on;
	__u8 glob_kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_scratch);
} armor_scratch SEC(".maps");

static __always_inline struct armor_scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&armor_scratch, &zero);
}

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&armor_counters, &slot);
	if (c)
		*c += 1;
}

struct workload_ctx {
	int level; /* the task's cgroup level */
	__u64 id;  /* the nearest registered ancestor found, or 0 */
};

/* Step i: the task's cgroup ancestor i levels up. */
static long workload_step(__u32 i, void *ctx)
{
	struct workload_ctx *c = ctx;
	int level = c->level - (int)i;
	if (level < 0)
		return 1;
	__u64 id = bpf_get_current_ancestor_cgroup_id(level);
	if (id && bpf_map_lookup_elem(&armor_workloads, &id)) {
		c->id = id;
		return 1;
	}
	return 0;
}

/* The nearest registered cgroup ancestor of the current task (its id in *cg), at any depth (a
 * container's own sub-cgroups keep its rules; `max_level` bounds the levels searched), else the
 * host entry (*cg = 0), else NULL: the task is not managed. */
static __always_inline struct armor_workload *find_workload(__u64 *cg, __u32 max_level)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);
	struct workload_ctx c = {.level = level, .id = 0};
	if (level >= 0) {
		__u32 n = (__u32)level + 1;
		if (max_level < (__u32)level)
			n = max_level + 1;
		bpf_loop(n, workload_step, &c, 0);
	}
	*cg = c.id;
	return bpf_map_lookup_elem(&armor_workloads, &c.id);
}

/* At a mount crossing: the directory rules named by (device, inode) of the mount's root and of
 * its ancestors inside its file system (a bind mount of a protected directory, or of a
 * directory below one). `p->n` components lie between the mount's root and the leaf. */
static __always_inline void probe_dir_inodes(struct armor_scratch *s, struct armor_path *p,
					     struct dentry *d)
{
	__u8 kind = s->category == ARMOR_CAT_FILE ? ARMOR_KIND_FILE_DIR_INODE
						   : ARMOR_KIND_PROC_DIR_INODE;
	__u32 ruleset = p->ruleset;
	__u32 dist = p->n;
	for (int k = 0; k < 16; k++) {
		struct inode *inode = BPF_CORE_READ(d, d_inode);
		if (!inode)
			break;
		__u32 dev = BPF_CORE_READ(inode, i_sb, s_dev);
		__u64 ino = BPF_CORE_READ(inode, i_ino);
		armor_check(ruleset, kind, armor_inode_target(dev, ino), dist > 1);
		struct dentry *up = BPF_CORE_READ(d, d_parent);
		if (!up || up == d)
			break;
		d = up;
		dist++;
	}
}

/* What the walk's loop bodies need: the path, the scratch space and the automaton, looked up
 * once per walk. */
struct walk_ctx {
	struct armor_path *p;
	struct armor_scratch *s;
	const struct armor_dfa *dfa;
};

/* A dentry's name and its length (at most ARMOR_NAME_MAX - 1). */
static __always_inline const unsigned char *dentry_name(struct dentry *d, __u32 *len)
{
	__u32 n = BPF_CORE_READ(d, d_name.len);
	*len = n < ARMOR_NAME_MAX - 1 ? n : ARMOR_NAME_MAX - 1;
	return BPF_CORE_READ(d, d_name.name);
}

/* Component i, root first, of the kept components of the last walk. */
static __always_inline struct dentry *kept_dentry(const struct armor_scratch *s,
						  const struct armor_path *p, __u32 i)
{
	return s->stack[(p->n - 1 - i) & ARMOR_COMPS_MASK];
}

/* Leaf to root: push dentries (the names are read later, root first, by the prefix pass),
 * cross mounts, stop at the mount namespace's root. */
static long walk_up(__u32 i, void *ctx)
{
	struct walk_ctx *wc = ctx;
	struct armor_scratch *s = scratch();
	struct armor_path *p = wc->p;
	if (!s || !p)
		return 1;
	struct dentry *d = s->dentry;
	struct mount *mnt = s->mnt;
	if (!d || !mnt)
		return 1;
	if (d == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt == s->root_mnt || parent == mnt || !parent) {
			/* Outside the namespace's tree: the kernel's own objects (pipes, sockets,
			 * anonymous inodes), a detached tree, another namespace's. The directory
			 * rules by (device, inode) still see the top of such a tree. */
			s->internal = mnt != s->root_mnt;
			s->kernel_internal =
				s->internal && BPF_CORE_READ(mnt, mnt_ns) == ARMOR_MNT_NS_INTERNAL;
			if (s->internal && !s->kernel_internal && p->lookups &&
			    (s->rs.flags & ARMOR_RS_DIR_INODE(s->category)))
				probe_dir_inodes(s, p, d);
			s->done = 1;
			return 1;
		}
		if (p->lookups && (s->rs.flags & ARMOR_RS_DIR_INODE(s->category)))
			probe_dir_inodes(s, p, d);
		s->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		s->mnt = parent;
		return 0;
	}
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	if (!up || up == d) {
		/* The root of a dentry tree that is not this mount's root: a pseudo file of the
		 * kernel's own (a pipe, a socket, an anonymous inode, memfd: on a kernel mount), a
		 * disconnected dentry (open_by_handle_at) or a file system not mounted here. */
		s->internal = 1;
		s->kernel_internal = BPF_CORE_READ(mnt, mnt_ns) == ARMOR_MNT_NS_INTERNAL;
		if (!s->kernel_internal && p->lookups &&
		    (s->rs.flags & ARMOR_RS_DIR_INODE(s->category)))
			probe_dir_inodes(s, p, d);
		s->done = 1;
		return 1;
	}
	/* The prefix pass reads the names, root first (armor_comp_at). */
	s->stack[p->n & ARMOR_COMPS_MASK] = d;
	p->n++;
	s->dentry = up;
	return 0;
}

/* The prefix pass reads the names through the scratch space. */
static __always_inline void *armor_comp_src(void *ctx)
{
	return ((struct walk_ctx *)ctx)->s;
}

/* Component d (root first) of the walk: its name read (into s->name) and hashed. */
static __always_inline int armor_comp_at(void *src, const struct armor_path *p, __u64 d,
					 __u64 key, __u64 *c)
{
	struct armor_scratch *s = src;
	__u32 len;
	const unsigned char *name = dentry_name(kept_dentry(s, p, d), &len);
	if (bpf_probe_read_kernel(s->name, len & (ARMOR_NAME_MAX - 1), name))
		return 0;
	*c = armor_comp_hash(key, s->name, len);
	return 1;
}

/* Component i (root first) of the kept components into the alert text: the names are read
 * again, only when an alert needs the text. */
static long walk_text(__u32 i, void *ctx)
{
	struct armor_scratch *s = scratch();
	struct armor_path *p = armor_path();
	if (!s || !p)
		return 1;
	struct dentry *d = kept_dentry(s, p, i);
	__u32 len;
	const unsigned char *name = dentry_name(d, &len);
	__u32 pos = s->path_len;
	if (pos + 1 + len >= ARMOR_ALERT_PATH) {
		s->truncated = 1;
		return 1;
	}
	s->path[pos & (ARMOR_NAME_MAX - 1)] = '/';
	pos++;
	if (bpf_probe_read_kernel(s->path + (pos & (ARMOR_NAME_MAX - 1)),
				  len & (ARMOR_NAME_MAX - 1), name))
		return 1;
	s->path_len = pos + len;
	return 0;
}

/* The text of the last walk's path into s->path / s->path_len (its root-most components when it
 * does not fit: s->truncated). */
static __always_inline void walk_text_build(struct armor_scratch *s)
{
	struct armor_path *p = armor_path();
	if (s->text_done || !p)
		return;
	s->text_done = 1;
	s->path_len = 0;
	s->truncated = 0;
	bpf_loop(armor_kept(p), walk_text, NULL, 0);
	if (s->path_len == 0) {
		s->path[0] = '/';
		s->path_len = 1;
	}
}

/* Component i (root first) through the glob automaton: only for a category with globs, which
 * reads the names a second time. */
static long walk_dfa(__u32 i, void *ctx)
{
	struct walk_ctx *wc = ctx;
	struct armor_scratch *s = scratch();
	if (!s || !wc->p || !wc->dfa || !s->dfa_state)
		return 1;
	struct dentry *d = kept_dentry(s, wc->p, i);
	__u32 len;
	const unsigned char *name = dentry_name(d, &len);
	if (bpf_probe_read_kernel(s->name, len & (ARMOR_NAME_MAX - 1), name)) {
		s->dfa_state = 0;
		return 1;
	}
	s->dfa_state = armor_dfa_component(wc->dfa, s->dfa_state, s->name, len);
	return 0;
}

#define ARMOR_WALK_LOOKUPS 1 /* probe the directory entries and run the automaton */
#define ARMOR_WALK_TEXT 2    /* build the text now */

/* Walks (dentry, mnt) to the root of the current mount namespace: every component's dentry into
 * s->stack (walk_up), then the prefix pass (armor_prefixes, which reads and hashes the names
 * root first through armor_comp_at: the full path hash in p->hash, the leaf's own in p->leaf,
 * and, with ARMOR_WALK_LOOKUPS, the directory entries of `ruleset` at the depths p->dir_bits
 * names, of kind p->dir_kind, which the caller sets), then the glob automaton
 * when the category has globs. The text is built when needed (walk_text_build), or at once with
 * ARMOR_WALK_TEXT. Sets s->done (reached the root). Returns 1 when the path is complete. */
static __noinline int armor_walk(struct armor_scratch *s, __u32 ruleset, struct dentry *dentry,
				 struct vfsmount *vfsmnt, int flags)
{
	int lookups = flags & ARMOR_WALK_LOOKUPS;
	if (!s)
		return 0;
	struct armor_path *p = armor_path();
	if (!p)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	s->dentry = dentry;
	s->mnt = (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
	s->root_mnt = BPF_CORE_READ(task, nsproxy, mnt_ns, root);
	p->n = 0;
	p->resolved = 0;
	p->ruleset = ruleset;
	p->lookups = lookups;
	s->internal = 0;
	s->kernel_internal = 0;
	s->done = 0;
	s->truncated = 0;
	s->text_done = 0;
	s->path_len = 0;
	s->dfa_on = 0;
	s->dfa_state = 0;
	if (lookups && (s->rs.flags & ARMOR_RS_GLOB(s->category))) {
		s->dfa_on = 1;
		s->dfa_state = ARMOR_DFA_START;
		s->dfa_key.ruleset = ruleset;
		s->dfa_key.category = s->category;
	}
	struct walk_ctx wc = {.p = p, .s = s, .dfa = NULL};
	bpf_loop(ARMOR_WALK_MAX, walk_up, &wc, 0);
	if (s->internal) {
		/* No path in the caller's tree: no path rule can name it (only the (device, inode)
		 * entries probed on the way). */
		if (flags & ARMOR_WALK_TEXT)
			walk_text_build(s);
		return 0;
	}
	armor_prefixes(p, s->key, &wc);
	if (s->dfa_on) {
		wc.dfa = bpf_map_lookup_elem(&armor_dfas, &s->dfa_key);
		if (!wc.dfa) {
			s->dfa_state = 0;
		} else {
			bpf_loop(armor_kept(p), walk_dfa, &wc, 0);
			/* The root itself: the automaton reads "/". */
			if (p->n == 0 && s->dfa_state)
				s->dfa_state = armor_dfa_step(wc.dfa, s->dfa_state, '/');
		}
	}
	if (flags & ARMOR_WALK_TEXT)
		walk_text_build(s);
	int complete = s->done && p->resolved == p->n;
	if (!complete)
		count(ARMOR_CNT_INCOMPLETE);
	return complete;
}

/* Match i of the final automaton state: probe that glob's entries. */
static long glob_match(__u32 i, void *ctx)
{
	struct armor_scratch *s = scratch();
	if (!s)
		return 1;
	struct armor_dfa *dfa = bpf_map_lookup_elem(&armor_dfas, &s->dfa_key);
	if (!dfa)
		return 1;
	__u16 glob = dfa->matches[(s->dfa_off + i) & (ARMOR_DFA_MATCHES - 1)];
	armor_check(s->dfa_key.ruleset, s->glob_kind, glob, 0);
	return 0;
}

/* The globs matching the whole path (after a complete walk with the automaton on). */
static __always_inline void probe_globs(struct armor_scratch *s, int file)
{
	if (!s->dfa_on || !s->dfa_state)
		return;
	struct armor_dfa *dfa = bpf_map_lookup_elem(&armor_dfas, &s->dfa_key);
	if (!dfa)
		return;
	__u32 acc = dfa->accept[s->dfa_state & (ARMOR_DFA_STATES - 1)];
	__u32 n = acc & 0xffff;
	if (!n)
		return;
	if (n > ARMOR_DFA_MATCHES)
		n = ARMOR_DFA_MATCHES;
	s->dfa_off = acc >> 16;
	s->glob_kind = file ? ARMOR_KIND_FILE_GLOB : ARMOR_KIND_PROC_GLOB;
	bpf_loop(n, glob_match, NULL, 0);
}

/* The acting executable: its path hash and text (into s->alert.source). An executable outside
 * the mount namespace's tree has no path a fromSource rule could name: its hash is 0 (no
 * source). One that is the root of its mount or has no parent (runc init runs from a private
 * bind mount of runc's binary, or from a memfd) is named in the alert by its own name: `runc`,
 * `memfd:runc_cloned:/proc/self/exe`. */
static __always_inline __u64 source_of(struct armor_scratch *s)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return 0;
	struct path fp = BPF_CORE_READ(exe, f_path);
	struct armor_path *p = armor_path();
	if (!p)
		return 0;
	int ok = armor_walk(s, 0, fp.dentry, fp.mnt, ARMOR_WALK_TEXT);
	if (s->internal) {
		ok = 0;
		if (p->n == 0) {
			__u32 len = BPF_CORE_READ(fp.dentry, d_name.len) & (ARMOR_NAME_MAX - 1);
			const unsigned char *name = BPF_CORE_READ(fp.dentry, d_name.name);
			if (bpf_probe_read_kernel(s->path, len, name) == 0)
				s->path_len = len;
		}
	}
	__u32 n = s->path_len < ARMOR_ALERT_PATH ? s->path_len : ARMOR_ALERT_PATH;
	__builtin_memcpy(s->alert.source, s->path, ARMOR_ALERT_PATH);
	s->alert.source_len = n;
	return ok ? p->hash : 0;
}

static __always_inline int rate_ok(__u64 cg, __u32 limit)
{
	if (!limit)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	struct armor_rate *r = bpf_map_lookup_elem(&armor_rates, &cg);
	if (!r) {
		struct armor_rate fresh = {.window_start = now, .count = 1};
		bpf_map_update_elem(&armor_rates, &cg, &fresh, BPF_ANY);
		return 1;
	}
	if (now - r->window_start > 1000000000ULL) {
		r->window_start = now;
		r->count = 0;
	}
	return __sync_fetch_and_add(&r->count, 1) < limit;
}

/* Sets up s->op for the current task; returns its ruleset's id, or 0 when the task is not
 * managed or has no rules (or waits for its first exec, which `map` is not). */
static __always_inline __u32 begin_op(struct armor_scratch *s, __u8 category, __u64 *cg,
				      __u32 *limit, int map)
{
	__u32 zero = 0;
	struct armor_state *st = armor_state();
	if (!st)
		return 0;
	st->op.ruleset = 0;
	struct armor_config *cfg = bpf_map_lookup_elem(&armor_config, &zero);
	if (!cfg)
		return 0;
	struct armor_workload *w = find_workload(cg, cfg->max_cgroup_level);
	if (!w || !w->ruleset)
		return 0;
	if (w->flags & ARMOR_W_UNTIL_EXEC) {
		/* The runtime's setup of a created container: not subject to the rules until a
		 * task of the workload executes a program (the only Process operation); that exec
		 * is the first operation decided. */
		if (category != ARMOR_CAT_PROCESS || map)
			return 0;
		w->flags &= ~ARMOR_W_UNTIL_EXEC;
	}
	__u32 id = w->ruleset;
	*limit = w->alerts_per_sec;
	s->rs = w->rs;
	s->key = cfg->hash_key;
	armor_slots_init(&st->op.slots);
	st->op.npend = 0;
	st->op.ruleset = id;
	st->op.category = category;
	{
		struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
		st->op.uid = BPF_CORE_READ(task, cred, fsuid.val);
	}
	st->op.owner_known = 0;
	st->op.write = 0;
	st->op.source = 0;
	s->alert.source_len = 0;
	s->alert.flags = 0;
	if (s->rs.flags & ARMOR_RS_SOURCE(category))
		st->op.source = source_of(s);
	return id;
}

static __always_inline __u32 begin(struct armor_scratch *s, __u8 category, __u64 *cg,
				   __u32 *limit)
{
	return begin_op(s, category, cg, limit, 0);
}

/* Decides s->op and raises the alert; returns the hook's return value. */
static __always_inline int finish(struct armor_scratch *s, __u64 cg, __u32 limit, __u32 detail,
				  int incomplete)
{
	struct armor_state *st = armor_state();
	if (!st)
		return 0;
	__u32 rule = ARMOR_RULE_POSTURE;
	int verdict = armor_verdict(&st->op, &s->rs, &rule);
	if (incomplete && verdict != ARMOR_ACTION_BLOCK && s->rs.allow_list[st->op.category & 3]) {
		/* Part of the path is unknown and an Allow rule could have been needed. */
		verdict = ARMOR_ACTION_BLOCK;
		rule = ARMOR_RULE_POSTURE;
		count(ARMOR_CNT_INCOMPLETE_DENIED);
	}
	if (verdict == ARMOR_ACTION_ALLOW)
		return 0;
	if (verdict == ARMOR_ACTION_BLOCK)
		count(ARMOR_CNT_BLOCKED);
	if (!rate_ok(cg, limit)) {
		count(ARMOR_CNT_RATE_LIMITED);
	} else {
		struct armor_alert *a = &s->alert;
		a->cgroup = cg;
		a->source_hash = st->op.source;
		a->rule = rule;
		a->pid = bpf_get_current_pid_tgid() >> 32;
		a->uid = st->op.uid;
		a->detail = detail;
		a->category = st->op.category;
		a->action = verdict;
		if (st->op.category <= ARMOR_CAT_FILE)
			walk_text_build(s);
		if (s->truncated)
			a->flags |= ARMOR_ALERT_F_TRUNCATED;
		if (incomplete)
			a->flags |= ARMOR_ALERT_F_INCOMPLETE;
		if (st->op.category <= ARMOR_CAT_FILE) {
			__builtin_memcpy(a->path, s->path, ARMOR_ALERT_PATH);
			a->path_len = s->path_len < ARMOR_ALERT_PATH ? s->path_len : ARMOR_ALERT_PATH;
		} else {
			a->path_len = 0;
		}
		if (!a->source_len && !st->op.source) {
			/* The source text was not needed for matching: resolve it for the alert. */
			struct armor_alert *keep = a;
			__u8 flags = keep->flags;
			__u32 plen = keep->path_len;
			source_of(s);
			keep->flags = flags;
			keep->path_len = plen;
		}
		if (bpf_ringbuf_output(&armor_alerts, a, sizeof(*a), 0))
			count(ARMOR_CNT_RESERVE_FAILED);
		else
			count(ARMOR_CNT_ALERTS);
	}
	return verdict == ARMOR_ACTION_BLOCK ? -EPERM : 0;
}

/* allowedArgs. The arguments an exec is decided on are read from the caller's memory when the
 * exec is first decided (bprm_check: the syscall's argv through pt_regs), once per exec (per
 * bprm); a second decision of the same exec (a script's interpreter, binfmt_misc) has no
 * arguments of its own: unknown. When listed arguments let the exec through,
 * bprm_committing_creds compares the new program's own arguments with them before it runs (a
 * second thread of the caller can rewrite them while the kernel copies them). Keyed by the task
 * (its task_struct: a thread that execs keeps it while it takes its leader's pid); removed at
 * commit, when the exec is denied, and when the task is freed. */
#define ARMOR_ARGS_UNKNOWN 0  /* not an execve/execveat from user space */
#define ARMOR_ARGS_OK 1
#define ARMOR_ARGS_UNCHECKABLE 2 /* unreadable, more than ARMOR_MAX_ARGS, one too long, or not
				    the ones the kernel copied */

struct armor_exec_args {
	__u64 bprm;   /* the exec they belong to */
	__u64 cgroup;
	__u32 argc;   /* arguments after argv[0] */
	__u32 copied; /* strings the kernel copied (argv[0] included) */
	__u32 state;
	__u32 round;  /* decisions of this exec so far */
	__u32 verify; /* listed arguments let the exec through: bprm_committing_creds checks */
	__u32 rule;   /* that rule (for the alert when they changed) */
	__u64 hash[ARMOR_MAX_ARGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct armor_exec_args);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* records live from an exec's decision to its end */
} armor_exec_args SEC(".maps");

/* Scratch: the arguments being read, and one argument's bytes (ARMOR_NAME_MAX + 8 readable for
 * armor_comp_hash). */
struct armor_args_scratch {
	struct armor_exec_args a;
	char buf[ARMOR_NAME_MAX + 8];
	const char *const *argv;
	__u64 key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_args_scratch);
} armor_args_scratch SEC(".maps");

/* bpf_loop's context must be on the stack (6.1): it points to the scratch. */
struct armor_args_ctx {
	struct armor_args_scratch *x;
};

static long capture_arg(__u32 i, void *ctx)
{
	struct armor_args_scratch *x = ((struct armor_args_ctx *)ctx)->x;
	const char *p = NULL;
	if (bpf_probe_read_user(&p, sizeof(p), &x->argv[i + 1])) {
		x->a.state = ARMOR_ARGS_UNCHECKABLE;
		return 1;
	}
	if (!p)
		return 1;
	if (i >= ARMOR_MAX_ARGS) {
		x->a.state = ARMOR_ARGS_UNCHECKABLE;
		return 1;
	}
	long n = bpf_probe_read_user_str(x->buf, ARMOR_ARG_MAX + 2, p);
	if (n <= 0 || n > ARMOR_ARG_MAX + 1) {
		x->a.state = ARMOR_ARGS_UNCHECKABLE;
		return 1;
	}
	__u64 h = armor_comp_hash(x->key, x->buf, (__u32)(n - 1));
	__u32 at = i;
	/* Keep the mask: the compiler drops it after the bound check above, the verifier needs it. */
	asm volatile("" : "+r"(at));
	x->a.hash[at & (ARMOR_MAX_ARGS - 1)] = h;
	x->a.argc = i + 1;
	return 0;
}

/* At an exec's decision in bprm_check: the first decision of this exec reads its arguments when
 * the workload's rules have allowedArgs (else forgets what an earlier exec left); a later one
 * counts a round. */
static __always_inline void exec_args_begin(struct linux_binprm *bprm)
{
	__u32 zero = 0;
	__u64 key = (__u64)bpf_get_current_task();
	struct armor_exec_args *old = bpf_map_lookup_elem(&armor_exec_args, &key);
	if (old && old->bprm == (__u64)bprm) {
		old->round++;
		return;
	}
	struct armor_config *cfg = bpf_map_lookup_elem(&armor_config, &zero);
	if (!cfg)
		return;
	__u64 cg = 0;
	struct armor_workload *w = find_workload(&cg, cfg->max_cgroup_level);
	if (!w || !w->ruleset || !(w->rs.flags & ARMOR_RS_ARGS)) {
		if (old)
			bpf_map_delete_elem(&armor_exec_args, &key);
		return;
	}
	struct armor_args_scratch *x = bpf_map_lookup_elem(&armor_args_scratch, &zero);
	if (!x)
		return;
	x->a.bprm = (__u64)bprm;
	x->a.cgroup = cg;
	x->a.argc = 0;
	x->a.copied = BPF_CORE_READ(bprm, argc);
	x->a.state = ARMOR_ARGS_UNKNOWN;
	x->a.round = 1;
	x->a.verify = 0;
	x->a.rule = 0;
	x->key = cfg->hash_key;
	x->argv = NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (regs) {
		long nr = BPF_CORE_READ(regs, orig_ax);
		if (nr == ARMOR_NR_EXECVE)
			x->argv = (const char *const *)BPF_CORE_READ(regs, si);
		else if (nr == ARMOR_NR_EXECVEAT)
			x->argv = (const char *const *)BPF_CORE_READ(regs, dx);
	}
	if (x->argv) {
		const char *first = NULL;
		x->a.state = ARMOR_ARGS_OK;
		if (bpf_probe_read_user(&first, sizeof(first), x->argv))
			x->a.state = ARMOR_ARGS_UNCHECKABLE;
		else if (first) {
			struct armor_args_ctx c = {.x = x};
			bpf_loop(ARMOR_MAX_ARGS + 1, capture_arg, &c, 0);
		}
		/* The kernel copied its own count of strings (an empty argv becomes one empty
		 * argv[0]): another count means the caller changed them meanwhile. */
		__u32 mine = x->a.argc + 1;
		if (x->a.state == ARMOR_ARGS_OK && mine != x->a.copied)
			x->a.state = ARMOR_ARGS_UNCHECKABLE;
	}
	bpf_map_update_elem(&armor_exec_args, &key, &x->a, BPF_ANY);
}

/* The argument check of one pending entry (bpf_loop over the arguments). */
struct armor_args_check {
	struct armor_state *st;
	struct armor_exec_args *a;
	__u32 rule;
	int listed;
};

static long check_arg(__u32 i, void *ctx)
{
	struct armor_args_check *c = ctx;
	if (i >= c->a->argc)
		return 1;
	__u32 at = i;
	asm volatile("" : "+r"(at));
	__u64 target = armor_extend(c->a->hash[at & (ARMOR_MAX_ARGS - 1)], c->rule);
	if (!armor_maybe(c->st->op.ruleset, ARMOR_KIND_PROC_ARG, target) ||
	    !armor_first(c->st, ARMOR_KIND_PROC_ARG, target, 0,
			 armor_key_hash(c->st->op.ruleset, ARMOR_KIND_PROC_ARG, target))) {
		c->listed = 0;
		return 1;
	}
	return 0;
}

/* Decides the pending allowedArgs entries of an exec (a mapping, and a second decision of the
 * same exec, have no arguments: not listed): permitted = the other qualifiers allow it and every
 * argument is one the rule lists. When the listed arguments let the exec through where unlisted
 * ones would have it denied, bprm_committing_creds checks that the new program receives them. */
static __always_inline void resolve_args(struct armor_state *st, struct armor_scratch *s,
					 __u32 detail)
{
	__u32 n = st->op.npend;
	if (!n)
		return;
	struct armor_exec_args *a = NULL;
	if (!(detail & ARMOR_DETAIL_MAP)) {
		__u64 key = (__u64)bpf_get_current_task();
		a = bpf_map_lookup_elem(&armor_exec_args, &key);
	}
	/* What the other entries decided, and then with every argument unlisted: the decision
	 * the exec would get if its arguments were others. */
	struct armor_slots alt = st->op.slots;
	int any_listed = 0;
	__u32 listed_rule = 0;
	for (__u32 k = 0; k < ARMOR_PENDING; k++) {
		if (k >= n)
			break;
		__u32 rule = st->op.pend_rule[k];
		__u8 action = st->op.pend_action[k];
		__u8 flags = st->op.pend_flags[k];
		__u32 spec = st->op.pend_spec[k];
		__u32 rank = st->op.pend_rank[k];
		int listed = 0;
		if (a && a->state == ARMOR_ARGS_OK && a->round == 1) {
			struct armor_args_check c = {.st = st, .a = a, .rule = rule, .listed = 1};
			if (a->argc)
				bpf_loop(ARMOR_MAX_ARGS, check_arg, &c, 0);
			listed = c.listed;
		}
		if (listed && !any_listed) {
			any_listed = 1;
			listed_rule = rule;
		}
		int owner_ok = !(flags & ARMOR_F_OWNER_ONLY) ||
			       (st->op.owner_known && st->op.owner == st->op.uid);
		int permitted = listed && owner_ok;
		int covered = action == ARMOR_ACTION_ALLOW ? permitted : !permitted;
		if (covered)
			armor_take(st, action, spec, rank, rule);
		/* Unlisted: a Block or Audit covers, an Allow does not. */
		if (action != ARMOR_ACTION_ALLOW)
			armor_slots_take(&alt, action, spec, rank, rule);
	}
	/* Listed arguments that let the exec through where others would be denied: the new
	 * program must receive them (bprm_committing_creds). */
	if (a && any_listed && !a->verify) {
		__u32 r1 = 0, r2 = 0;
		int real = armor_slots_verdict(&st->op.slots, &s->rs, ARMOR_CAT_PROCESS, &r1);
		int other = armor_slots_verdict(&alt, &s->rs, ARMOR_CAT_PROCESS, &r2);
		if (real != ARMOR_ACTION_BLOCK && other == ARMOR_ACTION_BLOCK) {
			a->verify = 1;
			a->rule = listed_rule;
		}
	}
}

/* Whether `inode` is a per-process entry of procfs (/proc/<pid>/..., /proc/<pid>/task/<tid>/...)
 * of a task outside the caller's thread group. The entry's struct pid names the task; the
 * comparison is by thread group, so the caller's own threads are its own. */
static __always_inline int other_process_entry(struct inode *inode)
{
	if (BPF_CORE_READ(inode, i_sb, s_magic) != ARMOR_PROC_SUPER_MAGIC)
		return 0;
	struct proc_inode *pi =
		(void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	struct pid *pid = BPF_CORE_READ(pi, pid);
	if (!pid)
		return 0;
	struct hlist_node *first = BPF_CORE_READ(pid, tasks[0].first);
	if (!first)
		return 0;
	struct task_struct *t =
		(void *)first - bpf_core_field_offset(struct task_struct, pid_links);
	__u32 tgid = BPF_CORE_READ(t, tgid);
	return tgid != (__u32)(bpf_get_current_pid_tgid() >> 32);
}

/* Whether the dentry's name is `environ`. */
static __always_inline int is_environ(struct dentry *dentry)
{
	__u32 len;
	const unsigned char *name = dentry_name(dentry, &len);
	char b[8] = {};
	if (len != 7 || bpf_probe_read_kernel(b, 7, name))
		return 0;
	return b[0] == 'e' && b[1] == 'n' && b[2] == 'v' && b[3] == 'i' && b[4] == 'r' &&
	       b[5] == 'o' && b[6] == 'n';
}

/* The presets' conditions for a path operation, probed as entries of the operation's ruleset
 * (only the presets the ruleset has): an exec (not a mapping) of a file with no link
 * (filelessExec) or by a task with a controlling terminal (exec); an open of another process's
 * procfs entry (protectProc) or environ (protectEnv). */
static __always_inline void check_presets(struct armor_scratch *s, __u32 id, __u8 category,
					  struct dentry *dentry, struct inode *inode, __u32 detail)
{
	__u32 f = s->rs.flags;
	if (category == ARMOR_CAT_PROCESS) {
		if (detail & ARMOR_DETAIL_MAP)
			return;
		if ((f & ARMOR_RS_PRESET(ARMOR_PRESET_FILELESS)) && inode &&
		    !BPF_CORE_READ(inode, i_nlink))
			armor_check(id, ARMOR_KIND_PROC_PRESET, ARMOR_PRESET_FILELESS, 0);
		if (f & ARMOR_RS_PRESET(ARMOR_PRESET_EXEC)) {
			struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
			if (BPF_CORE_READ(task, signal, tty))
				armor_check(id, ARMOR_KIND_PROC_PRESET, ARMOR_PRESET_EXEC, 0);
		}
		return;
	}
	if (!(detail & ARMOR_DETAIL_OPEN) || !inode ||
	    !(f & (ARMOR_RS_PRESET(ARMOR_PRESET_PROC) | ARMOR_RS_PRESET(ARMOR_PRESET_ENV))))
		return;
	if (!other_process_entry(inode))
		return;
	if (f & ARMOR_RS_PRESET(ARMOR_PRESET_PROC))
		armor_check(id, ARMOR_KIND_FILE_PRESET, ARMOR_PRESET_PROC, 0);
	if ((f & ARMOR_RS_PRESET(ARMOR_PRESET_ENV)) && is_environ(dentry))
		armor_check(id, ARMOR_KIND_FILE_PRESET, ARMOR_PRESET_ENV, 0);
}

/* A path operation (exec or file access) on (dentry, mnt). */
static __always_inline int decide_path_begun(struct armor_scratch *s, __u32 id, __u64 cg,
					     __u32 limit, __u8 category, struct dentry *dentry,
					     struct vfsmount *mnt, int write, __u32 detail)
{
	struct armor_state *st = armor_state();
	struct armor_path *p = armor_path();
	if (!st || !p)
		return 0;
	struct inode *inode = BPF_CORE_READ(dentry, d_inode);
	if (inode) {
		st->op.owner = BPF_CORE_READ(inode, i_uid.val);
		st->op.owner_known = 1;
	}
	st->op.write = write;
	int file = category == ARMOR_CAT_FILE;
	p->dir_kind = file ? ARMOR_KIND_FILE_DIR : ARMOR_KIND_PROC_DIR;
	p->dir_bits = s->rs.dir_depths[file ? 1 : 0];
	s->category = category;
	int complete = armor_walk(s, id, dentry, mnt, ARMOR_WALK_LOOKUPS);
	/* The kernel's own objects (pipes, sockets, anonymous inodes, memfd) are no file a policy
	 * names: not decided, except an exec of one (fileless execution), which has no path an
	 * Allow rule could cover. Any other file outside the caller's tree (a detached tree, a
	 * disconnected dentry, another mount namespace's file) has no path here: it is decided by
	 * its (device, inode) and, like a path not resolved completely, denied in allow-list mode
	 * when it is opened or executed. Reads and writes through a descriptor the workload
	 * already holds (inherited from its runtime, received over a socket) are decided by the
	 * (device, inode) entries alone: the posture applied when the descriptor was opened. */
	if (s->kernel_internal && category != ARMOR_CAT_PROCESS)
		return 0;
	int held = s->internal && (detail & ARMOR_DETAIL_HELD);
	if (s->rs.flags & ARMOR_RS_PRESETS)
		check_presets(s, id, category, dentry, inode, detail);
	detail &= ~(ARMOR_DETAIL_HELD | ARMOR_DETAIL_OPEN);
	if (held)
		s->rs.allow_list[category & 3] = 0;
	if (complete) {
		armor_check(id, file ? ARMOR_KIND_FILE_PATH : ARMOR_KIND_PROC_PATH, p->hash, 0);
		if (!file && (s->rs.flags & ARMOR_RS_NAMES) && p->n > 0)
			armor_check(id, ARMOR_KIND_PROC_NAME, p->leaf, 0);
		probe_globs(s, file);
	}
	/* Exact rules by (device, inode): hardlinks and bind mounts reach the same inode. */
	if (inode && (s->rs.flags & ARMOR_RS_INODE(category))) {
		__u32 dev = BPF_CORE_READ(inode, i_sb, s_dev);
		__u64 ino = BPF_CORE_READ(inode, i_ino);
		armor_check(id, file ? ARMOR_KIND_FILE_INODE : ARMOR_KIND_PROC_INODE,
			    armor_inode_target(dev, ino), 0);
	}
	if (!file)
		resolve_args(st, s, detail);
	return finish(s, cg, limit, detail, !complete && !held);
}

static __always_inline int decide_path(__u8 category, struct dentry *dentry, struct vfsmount *mnt,
				       int write, __u32 detail)
{
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	__u32 id = begin(s, category, &cg, &limit);
	if (!id)
		return 0;
	return decide_path_begun(s, id, cg, limit, category, dentry, mnt, write, detail);
}

static __always_inline int decide_socket(__u16 family, __u16 type, __u16 protocol)
{
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	__u32 id = begin(s, ARMOR_CAT_NETWORK, &cg, &limit);
	if (!id)
		return 0;
	s->truncated = 0;
	type &= SOCK_TYPE_MASK;
	__u16 eff = protocol;
	if (!eff && (family == AF_INET || family == AF_INET6)) {
		if (type == SOCK_STREAM)
			eff = IPPROTO_TCP;
		else if (type == SOCK_DGRAM)
			eff = IPPROTO_UDP;
	}
	armor_check(id, ARMOR_KIND_NET_PROTO, eff, 0);
	if (family == AF_INET6 && eff == IPPROTO_ICMPV6)
		armor_check(id, ARMOR_KIND_NET_PROTO, IPPROTO_ICMP, 0);
	armor_check(id, ARMOR_KIND_NET_TYPE, type, 0);
	armor_check(id, ARMOR_KIND_NET_ALL, 0, 0);
	return finish(s, cg, limit, ((__u32)family << 16) | ((__u32)type << 8) | (eff & 0xff), 0);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(armor_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	struct file *f = bprm->file;
	if (!f)
		return 0;
	exec_args_begin(bprm);
	int r = decide_path(ARMOR_CAT_PROCESS, f->f_path.dentry, f->f_path.mnt, 0, 1);
	/* Kept while the exec goes on (a later decision of it, its commit); a denied exec is
	 * over. */
	if (r) {
		__u64 key = (__u64)bpf_get_current_task();
		bpf_map_delete_elem(&armor_exec_args, &key);
	}
	return r;
}

/* A new exec (once per exec, before its first bprm_check): what an earlier exec of the task
 * left (one that failed after its decision) is not this one's. */
SEC("lsm/bprm_creds_for_exec")
int BPF_PROG(armor_bprm_creds, struct linux_binprm *bprm, int ret)
{
	__u64 key = (__u64)bpf_get_current_task();
	bpf_map_delete_elem(&armor_exec_args, &key);
	return ret;
}

SEC("lsm/task_free")
int BPF_PROG(armor_task_free, struct task_struct *task)
{
	__u64 key = (__u64)task;
	bpf_map_delete_elem(&armor_exec_args, &key);
	return 0;
}

/* The new program's arguments (bprm_committing_creds): its argument area is the task's memory
 * now, strings one after the other from bprm->p. The caller's arguments are its last ones (after
 * argv[0]; after the interpreter's words and the script's path for a script). */
struct armor_commit_walk {
	const char *at;  /* the next string, or the rest of a long one */
	__u32 idx;       /* its index */
	__u32 end;       /* strings to walk */
	__u32 first;     /* index of the first compared string */
	struct armor_exec_args *a;
	__u64 key;
	int same;
};

struct armor_commit_buf {
	char buf[4096 + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_commit_buf);
} armor_commit_scratch SEC(".maps");

static long commit_string(__u32 i, void *ctx)
{
	struct armor_commit_walk *w = ctx;
	if (w->idx >= w->end)
		return 1;
	__u32 zero = 0;
	struct armor_commit_buf *b = bpf_map_lookup_elem(&armor_commit_scratch, &zero);
	if (!b) {
		w->same = 0;
		return 1;
	}
	long n = bpf_probe_read_user_str(b->buf, 4096, w->at);
	if (n <= 0) {
		w->same = 0;
		return 1;
	}
	if (n == 4096) {
		/* 4095 bytes read: the string ends there only if its next byte is the NUL. */
		char c = 1;
		if (bpf_probe_read_user(&c, 1, w->at + 4095)) {
			w->same = 0;
			return 1;
		}
		if (c) {
			if (w->idx >= w->first) {
				/* A compared argument is at most ARMOR_ARG_MAX bytes. */
				w->same = 0;
				return 1;
			}
			w->at += 4095;
			return 0;
		}
	}
	if (w->idx >= w->first) {
		__u32 k = w->idx - w->first;
		asm volatile("" : "+r"(k));
		if (n > ARMOR_ARG_MAX + 1 ||
		    armor_comp_hash(w->key, b->buf, (__u32)(n - 1) & (ARMOR_NAME_MAX - 1)) !=
			    w->a->hash[k & (ARMOR_MAX_ARGS - 1)]) {
			w->same = 0;
			return 1;
		}
	}
	w->at += n;
	w->idx++;
	return 0;
}

SEC("lsm/bprm_committing_creds")
int BPF_PROG(armor_bprm_committing, const struct linux_binprm *bprm)
{
	__u64 key = (__u64)bpf_get_current_task();
	struct armor_exec_args *a = bpf_map_lookup_elem(&armor_exec_args, &key);
	if (!a)
		return 0;
	if (!a->verify || a->bprm != (__u64)bprm) {
		bpf_map_delete_elem(&armor_exec_args, &key);
		return 0;
	}
	__u32 zero = 0;
	struct armor_config *cfg = bpf_map_lookup_elem(&armor_config, &zero);
	__u32 argc = BPF_CORE_READ(bprm, argc);
	struct armor_commit_walk w = {
		.at = (const char *)BPF_CORE_READ(bprm, p),
		.idx = 0,
		.end = argc,
		.first = argc - a->argc,
		.a = a,
		.key = cfg ? cfg->hash_key : 0,
		/* verify is set only for arguments read whole (state OK, copied = argc + 1). */
		.same = cfg && a->state == ARMOR_ARGS_OK && argc > a->argc &&
			argc <= ARMOR_MAX_ARGS + 32,
	};
	if (w.same) {
		bpf_loop(1024, commit_string, &w, 0);
		if (w.idx != w.end)
			w.same = 0;
	}
	if (!w.same) {
		/* SIGKILL is taken before the task returns to user space: nothing of the new
		 * program runs. */
		long err = bpf_send_signal(9);
		if (err)
			err = bpf_send_signal_thread(9);
		if (!err)
			count(ARMOR_CNT_ARGS_KILLED);
		struct armor_scratch *s = scratch();
		if (s) {
			struct armor_alert *al = &s->alert;
			al->cgroup = a->cgroup;
			al->source_hash = 0;
			al->rule = a->rule;
			al->pid = bpf_get_current_pid_tgid() >> 32;
			struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
			al->uid = BPF_CORE_READ(task, cred, fsuid.val);
			al->detail = ARMOR_DETAIL_ARGS_CHANGED;
			al->category = ARMOR_CAT_PROCESS;
			/* Not killed (no signal could be sent): reported, not claimed. */
			al->action = err ? ARMOR_ACTION_AUDIT : ARMOR_ACTION_BLOCK;
			al->flags = 0;
			al->path_len = 0;
			al->source_len = 0;
			if (bpf_ringbuf_output(&armor_alerts, al, sizeof(*al), 0))
				count(ARMOR_CNT_RESERVE_FAILED);
			else
				count(ARMOR_CNT_ALERTS);
		}
	}
	bpf_map_delete_elem(&armor_exec_args, &key);
	return 0;
}

static __always_inline int file_op(struct file *f, __u32 mode, __u32 held)
{
	int write = (mode & FMODE_WRITE) != 0;
	__u32 detail = (write ? 2 : 0) | ((mode & 1) ? 1 : 0) | held;
	return decide_path(ARMOR_CAT_FILE, f->f_path.dentry, f->f_path.mnt, write, detail);
}

SEC("lsm/file_open")
int BPF_PROG(armor_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	__u32 mode = file->f_mode;
	/* The kernel opening a binary to execute it belongs to the Process operation, decided in
	 * bprm_check. */
	if ((mode & FMODE_EXEC) || (file->f_flags & __FMODE_EXEC))
		return 0;
	/* Overlayfs opens the backing file again under the mounter's credentials: skip it. */
	if (mode & FMODE_NOACCOUNT) {
		count(ARMOR_CNT_OVERLAY_SKIPPED);
		return 0;
	}
	int r = file_op(file, mode, ARMOR_DETAIL_OPEN);
	if (r == 0) {
		struct armor_state *st = armor_state();
		if (st && st->op.ruleset) {
			__u64 key = (__u64)file;
			__u32 rs = st->op.ruleset;
			bpf_map_update_elem(&armor_files, &key, &rs, BPF_ANY);
		}
	}
	return r;
}

SEC("lsm/file_permission")
int BPF_PROG(armor_file_permission, struct file *file, int mask, int ret)
{
	if (ret)
		return ret;
	__u64 key = (__u64)file;
	__u32 *seen = bpf_map_lookup_elem(&armor_files, &key);
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	/* Cheap check first: decided at open under the ruleset still active? */
	__u32 zero = 0;
	struct armor_config *cfg = bpf_map_lookup_elem(&armor_config, &zero);
	if (!cfg)
		return 0;
	struct armor_workload *w = find_workload(&cg, cfg->max_cgroup_level);
	if (!w || !w->ruleset || (w->flags & ARMOR_W_UNTIL_EXEC))
		return 0;
	if (seen && *seen == w->ruleset)
		return 0;
	__u32 mode = file->f_mode;
	if ((mode & (FMODE_EXEC | FMODE_NOACCOUNT)) || (file->f_flags & __FMODE_EXEC))
		return 0;
	/* MAY_WRITE = 2, MAY_APPEND = 8 */
	__u32 want = (mask & (2 | 8)) ? FMODE_WRITE : 1;
	int r = file_op(file, want, ARMOR_DETAIL_HELD);
	if (r == 0) {
		__u32 rs = w->ruleset;
		bpf_map_update_elem(&armor_files, &key, &rs, BPF_ANY);
	}
	(void)limit;
	return r;
}

SEC("lsm/file_free_security")
int BPF_PROG(armor_file_free, struct file *file)
{
	__u64 key = (__u64)file;
	bpf_map_delete_elem(&armor_files, &key);
	return 0;
}

/* A file mapped executable is decided as an exec of it by the Process rules, except that the
 * allow-list posture does not apply (every program maps its shared libraries executable, which
 * policies do not list): `ld.so FILE`, or any loader of its own, maps FILE's code instead of
 * executing it. The task's own executable (mapped by the kernel during the exec that was
 * decided) is not decided again. */
static __always_inline int decide_map(struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	if (file == BPF_CORE_READ(task, mm, exe_file))
		return 0;
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	__u32 id = begin_op(s, ARMOR_CAT_PROCESS, &cg, &limit, 1);
	if (!id)
		return 0;
	s->rs.allow_list[ARMOR_CAT_PROCESS] = 0;
	struct path fp = BPF_CORE_READ(file, f_path);
	return decide_path_begun(s, id, cg, limit, ARMOR_CAT_PROCESS, fp.dentry, fp.mnt, 0,
				 ARMOR_DETAIL_MAP);
}

/* Memory that is no named file made executable: the anonymousMapExec preset, a File operation
 * outside the file posture, with no path. */
static __always_inline int decide_memory(__u32 mprotect)
{
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	__u32 id = begin_op(s, ARMOR_CAT_FILE, &cg, &limit, 1);
	if (!id || !(s->rs.flags & ARMOR_RS_PRESET(ARMOR_PRESET_ANONMAP)))
		return 0;
	s->rs.allow_list[ARMOR_CAT_FILE] = 0;
	s->text_done = 1;
	s->path_len = 0;
	s->truncated = 0;
	armor_check(id, ARMOR_KIND_FILE_PRESET, ARMOR_PRESET_ANONMAP, 0);
	return finish(s, cg, limit, ARMOR_DETAIL_MEMORY | (mprotect ? ARMOR_DETAIL_MPROTECT : 0),
		      0);
}

/* A file with no link (a memfd, an unlinked file) mapped executable is anonymous code, except
 * the task's own executable, which the kernel maps during the exec that was decided (filelessExec
 * decides that exec). */
static __always_inline int nameless(struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	if (file == BPF_CORE_READ(task, mm, exe_file))
		return 0;
	return !BPF_CORE_READ(file, f_inode, i_nlink);
}

SEC("lsm/mmap_file")
int BPF_PROG(armor_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret || !(prot & ARMOR_PROT_EXEC))
		return ret;
	if (!file)
		return decide_memory(0);
	if (nameless(file)) {
		int r = decide_memory(0);
		if (r)
			return r;
	}
	return decide_map(file);
}

SEC("lsm/file_mprotect")
int BPF_PROG(armor_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	if (ret || !(prot & ARMOR_PROT_EXEC))
		return ret;
	if (BPF_CORE_READ(vma, vm_flags) & ARMOR_VM_EXEC)
		return 0;
	struct file *file = BPF_CORE_READ(vma, vm_file);
	if (!file)
		return decide_memory(1);
	if (nameless(file)) {
		int r = decide_memory(1);
		if (r)
			return r;
	}
	return decide_map(file);
}

SEC("lsm/path_link")
int BPF_PROG(armor_path_link, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	int r = decide_path(ARMOR_CAT_FILE, old_dentry, new_dir->mnt, 1, 2);
	if (r)
		return r;
	return decide_path(ARMOR_CAT_FILE, new_dentry, new_dir->mnt, 1, 2);
}

SEC("lsm/path_rename")
int BPF_PROG(armor_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	int r = decide_path(ARMOR_CAT_FILE, old_dentry, old_dir->mnt, 1, 2);
	if (r)
		return r;
	return decide_path(ARMOR_CAT_FILE, new_dentry, new_dir->mnt, 1, 2);
}

SEC("lsm/path_unlink")
int BPF_PROG(armor_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return decide_path(ARMOR_CAT_FILE, dentry, dir->mnt, 1, 2);
}

SEC("lsm/path_truncate")
int BPF_PROG(armor_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return decide_path(ARMOR_CAT_FILE, path->dentry, path->mnt, 1, 2);
}

SEC("lsm/path_chmod")
int BPF_PROG(armor_path_chmod, const struct path *path, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return decide_path(ARMOR_CAT_FILE, path->dentry, path->mnt, 1, 2);
}

SEC("lsm/path_chown")
int BPF_PROG(armor_path_chown, const struct path *path, __u64 uid, __u64 gid, int ret)
{
	if (ret)
		return ret;
	return decide_path(ARMOR_CAT_FILE, path->dentry, path->mnt, 1, 2);
}

SEC("lsm/socket_create")
int BPF_PROG(armor_socket_create, int family, int type, int protocol, int kern, int ret)
{
	if (ret || kern)
		return ret;
	return decide_socket(family, type, protocol);
}

static __always_inline int sock_op(struct socket *sock)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 type = BPF_CORE_READ(sock, type);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	return decide_socket(family, type, proto);
}

SEC("lsm/socket_connect")
int BPF_PROG(armor_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen,
	     int ret)
{
	if (ret)
		return ret;
	return sock_op(sock);
}

SEC("lsm/socket_accept")
int BPF_PROG(armor_socket_accept, struct socket *sock, struct socket *newsock, int ret)
{
	if (ret)
		return ret;
	return sock_op(sock);
}

SEC("lsm/capable")
int BPF_PROG(armor_capable, const struct cred *cred, struct user_namespace *ns, int cap,
	     unsigned int opts, int ret)
{
	if (ret)
		return ret;
	struct armor_scratch *s = scratch();
	if (!s)
		return 0;
	__u64 cg = 0;
	__u32 limit = 0;
	__u32 id = begin(s, ARMOR_CAT_CAPS, &cg, &limit);
	if (!id)
		return 0;
	s->truncated = 0;
	armor_check(id, ARMOR_KIND_CAP, cap, 0);
	return finish(s, cg, limit, cap, 0);
}

char LICENSE[] SEC("license") = "GPL";
