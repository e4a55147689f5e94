// SPDX-License-Identifier: GPL-2.0
// armor-ebpf: process, file and network events from tracepoints, filtered per cgroup by
// visibility in the kernel, delivered through one ring buffer. Every record that cannot be
// delivered is counted in `armor_stats` (ARMOR_STAT_LOST), so user space knows exactly what it missed.
//
// Syscall events are two-phase: sys_enter_* captures the arguments into `pending` (keyed by
// thread id) and sys_exit_* adds the return value and sends the record. Process events
// (exec/fork/exit) come from the BTF-typed scheduler tracepoints.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "armor_event.h"

#define AT_FDCWD -100
#define ARMOR_TS_COMPAT 0x0002 /* x86 thread_info.status: in a 32-bit syscall */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

// cgroup v2 id -> ARMOR_VIS_* mask. Cgroups not listed use config[ARMOR_CFG_DEFAULT_VIS].
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} visibility SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ARMOR_CFG_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} armor_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ARMOR_STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} armor_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_event);
} scratch SEC(".maps");

// Thread id -> the record its current syscall started.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct armor_event);
} pending SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&armor_stats, &slot);
	if (v)
		*v += 1;
}

static __always_inline __u32 cfg(__u32 slot)
{
	__u32 *v = bpf_map_lookup_elem(&armor_config, &slot);
	return v ? *v : 0;
}

struct workload_ctx {
	int level;  /* the task's cgroup level */
	__u64 id;   /* the nearest ancestor with a visibility entry, or 0 */
	__u32 mask; /* its entry */
};

// Step i: the task's cgroup ancestor i levels up.
static long workload_step(__u32 i, void *ctx)
{
	struct workload_ctx *c = ctx;
	int level = c->level - (int)i;
	if (level < 0)
		return 1;
	__u64 id = bpf_get_current_ancestor_cgroup_id(level);
	__u32 *mask = id ? bpf_map_lookup_elem(&visibility, &id) : NULL;
	if (mask) {
		c->id = id;
		c->mask = *mask;
		return 1;
	}
	return 0;
}

// The workload of `task`: the nearest of its cgroup and that cgroup's ancestors with a
// visibility entry (a container's sub-cgroups, at any depth, are the container's), id 0 when
// none has one. `visible` puts the calling task's workload (or its own cgroup) in *cgroup and
// says whether that workload sees category `bit`. A task under no entry keeps its own cgroup id and
// the default visibility.
static __always_inline struct workload_ctx workload_of(struct task_struct *task)
{
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);
	struct workload_ctx c = {.level = level, .id = 0, .mask = 0};
	if (level >= 0)
		bpf_loop((__u32)level + 1, workload_step, &c, 0);
	return c;
}

static __always_inline int visible(__u64 *cgroup, __u32 bit)
{
	struct workload_ctx c = workload_of((struct task_struct *)bpf_get_current_task());
	if (c.id) {
		*cgroup = c.id;
		return (c.mask & bit) != 0;
	}
	*cgroup = bpf_get_current_cgroup_id();
	return (cfg(ARMOR_CFG_DEFAULT_VIS) & bit) != 0;
}

static __always_inline __u32 ns_tgid(struct task_struct *task)
{
	struct pid *p = BPF_CORE_READ(task, group_leader, thread_pid);
	if (!p)
		return 0;
	unsigned int level = BPF_CORE_READ(p, level);
	struct upid up = {};
	bpf_probe_read_kernel(&up, sizeof(up), &p->numbers[level & 31]);
	return up.nr;
}

static __always_inline void fill_task(struct armor_event *e, struct task_struct *task)
{
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = BPF_CORE_READ(task, pid);
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->pid_ns = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->ns_pid = ns_tgid(task);
	e->ns_ppid = ns_tgid(parent);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
}

static __always_inline void clear(struct armor_event *e)
{
	for (int i = 0; i < 6; i++)
		e->args[i] = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	e->ret = 0;
	e->path[0] = 0;
	e->path2[0] = 0;
}

// Starts a syscall record in the per-CPU scratch slot, or NULL when the calling cgroup does not
// see this category (or the caller is the agent itself).
static __always_inline struct armor_event *begin(__u32 kind, __u32 bit)
{
	__u64 cgroup = 0;
	if (!visible(&cgroup, bit))
		return NULL;
	__u32 me = bpf_get_current_pid_tgid() >> 32;
	__u32 ignore = cfg(ARMOR_CFG_IGNORE_TGID);
	if (ignore != 0 && me == ignore)
		return NULL;
	__u32 zero = 0;
	struct armor_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return NULL;
	clear(e);
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup;
	e->kind = kind;
	fill_task(e, (struct task_struct *)bpf_get_current_task());
	return e;
}

static __always_inline int stash(struct armor_event *e)
{
	__u32 tid = e->tid;
	if (bpf_map_update_elem(&pending, &tid, e, BPF_ANY))
		count(ARMOR_STAT_PENDING_FULL);
	return 0;
}

static __always_inline void read_user_str(char *dst, const void *src)
{
	if (bpf_probe_read_user_str(dst, ARMOR_STR_MAX, src) < 0)
		dst[0] = 0;
}

static __always_inline void read_sockaddr(struct armor_event *e, const void *addr, __u64 len)
{
	if (!addr)
		return;
	if (len > ARMOR_ADDR_MAX)
		len = ARMOR_ADDR_MAX;
	len &= (ARMOR_ADDR_MAX * 2 - 1);
	if (len > ARMOR_ADDR_MAX)
		return;
	if (bpf_probe_read_user(e->addr, len, addr) < 0)
		__builtin_memset(e->addr, 0, sizeof(e->addr));
}

static __always_inline int finish(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct armor_event *e = bpf_map_lookup_elem(&pending, &tid);
	if (!e)
		return 0;
	e->ret = ret;
	if ((e->kind == ARMOR_ACCEPT || e->kind == ARMOR_ACCEPT4) && ret >= 0 && e->args[1]) {
		// The peer address is written by the kernel during the call: read it now.
		__u32 len = 0;
		if (e->args[2] && bpf_probe_read_user(&len, sizeof(len), (void *)e->args[2]) == 0)
			read_sockaddr(e, (void *)e->args[1], len);
	}
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		count(ARMOR_STAT_LOST);
	bpf_map_delete_elem(&pending, &tid);
	return 0;
}

// The syscall tracepoints' format is ABI (see .../events/syscalls/*/format): 8 bytes of common
// fields, the syscall number, then the arguments (or the return value). Plain structs, not the
// CO-RE ones from vmlinux.h: aya cannot relocate array accesses through the context pointer.
struct armor_sys_enter {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};
struct armor_sys_exit {
	__u64 common;
	__s64 nr;
	__s64 ret;
};
typedef struct armor_sys_enter enter_ctx;
typedef struct armor_sys_exit exit_ctx;

#define EXIT(name)                                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name)                   \
	int exit_##name(exit_ctx *ctx)                               \
	{                                                            \
		return finish(ctx->ret);                             \
	}

#define NONE -1

/* The common shape of a path syscall's event: args[0] = the directory fd in syscall argument
 * `dirfd` (AT_FDCWD when NONE), args[1] and args[2] = syscall arguments `x1` and `x2` as they
 * are (when not NONE), path = the string that argument `path` points to (when not NONE). The
 * indices are constants, so each program keeps only its own branches. */
static __always_inline int path_call(enter_ctx *ctx, __u32 kind, __u32 vis, int dirfd, int path,
				     int x1, int x2)
{
	struct armor_event *e = begin(kind, vis);
	if (!e)
		return 0;
	e->args[0] = dirfd == NONE ? AT_FDCWD : (int)ctx->args[dirfd];
	if (x1 != NONE)
		e->args[1] = ctx->args[x1];
	if (x2 != NONE)
		e->args[2] = ctx->args[x2];
	if (path != NONE)
		read_user_str(e->path, (void *)ctx->args[path]);
	return stash(e);
}

/* The entry program of syscall `name`, which returns `call` (an expression of `ctx`), and its
 * exit program. */
#define SYSCALL(name, call)                                                               \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                        \
	int enter_##name(enter_ctx *ctx)                                                  \
	{                                                                                  \
		return call;                                                               \
	}                                                                                  \
	EXIT(name)

// ---- files ---------------------------------------------------------------------------------
// args: [0] dirfd, [1] flags, [2] mode, [3] resolve (openat2)

SYSCALL(open, path_call(ctx, ARMOR_OPEN, ARMOR_VIS_FILE, NONE, 0, 1, 2))
SYSCALL(openat, path_call(ctx, ARMOR_OPENAT, ARMOR_VIS_FILE, 0, 1, 2, 3))

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(enter_ctx *ctx)
{
	struct armor_event *e = begin(ARMOR_OPENAT2, ARMOR_VIS_FILE);
	if (!e)
		return 0;
	e->args[0] = (int)ctx->args[0];
	struct open_how how = {};
	if (bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]) == 0) {
		e->args[1] = how.flags;
		e->args[2] = how.mode;
		e->args[3] = how.resolve;
	}
	read_user_str(e->path, (void *)ctx->args[1]);
	return stash(e);
}
EXIT(openat2)

// args: [0] dirfd, [1] flags (unlinkat)
SYSCALL(unlink, path_call(ctx, ARMOR_UNLINK, ARMOR_VIS_FILE, NONE, 0, NONE, NONE))
SYSCALL(unlinkat, path_call(ctx, ARMOR_UNLINKAT, ARMOR_VIS_FILE, 0, 1, 2, NONE))
SYSCALL(rmdir, path_call(ctx, ARMOR_RMDIR, ARMOR_VIS_FILE, NONE, 0, NONE, NONE))

// args: [0] old dirfd, [1] new dirfd, [2] flags (renameat2)
SEC("tracepoint/syscalls/sys_enter_rename")
int enter_rename(enter_ctx *ctx)
{
	struct armor_event *e = begin(ARMOR_RENAME, ARMOR_VIS_FILE);
	if (!e)
		return 0;
	e->args[0] = AT_FDCWD;
	e->args[1] = AT_FDCWD;
	read_user_str(e->path, (void *)ctx->args[0]);
	read_user_str(e->path2, (void *)ctx->args[1]);
	return stash(e);
}
EXIT(rename)

static __always_inline int renameat(enter_ctx *ctx, __u32 kind)
{
	struct armor_event *e = begin(kind, ARMOR_VIS_FILE);
	if (!e)
		return 0;
	e->args[0] = (int)ctx->args[0];
	e->args[1] = (int)ctx->args[2];
	if (kind == ARMOR_RENAMEAT2)
		e->args[2] = ctx->args[4];
	read_user_str(e->path, (void *)ctx->args[1]);
	read_user_str(e->path2, (void *)ctx->args[3]);
	return stash(e);
}

SYSCALL(renameat, renameat(ctx, ARMOR_RENAMEAT))
SYSCALL(renameat2, renameat(ctx, ARMOR_RENAMEAT2))

// args: [0] dirfd, [1] mode
SYSCALL(chmod, path_call(ctx, ARMOR_CHMOD, ARMOR_VIS_FILE, NONE, 0, 1, NONE))
SYSCALL(fchmodat, path_call(ctx, ARMOR_FCHMODAT, ARMOR_VIS_FILE, 0, 1, 2, NONE))

// args: [0] dirfd, [1] uid, [2] gid, [3] flags (fchownat)
static __always_inline int chown_at(enter_ctx *ctx, __u32 kind, int has_dirfd)
{
	struct armor_event *e = begin(kind, ARMOR_VIS_FILE);
	if (!e)
		return 0;
	e->args[0] = has_dirfd ? (int)ctx->args[0] : AT_FDCWD;
	if (has_dirfd) {
		e->args[1] = (int)ctx->args[2];
		e->args[2] = (int)ctx->args[3];
		e->args[3] = ctx->args[4];
		read_user_str(e->path, (void *)ctx->args[1]);
	} else {
		e->args[1] = (int)ctx->args[1];
		e->args[2] = (int)ctx->args[2];
		read_user_str(e->path, (void *)ctx->args[0]);
	}
	return stash(e);
}

SYSCALL(chown, chown_at(ctx, ARMOR_CHOWN, 0))
SYSCALL(lchown, chown_at(ctx, ARMOR_LCHOWN, 0))
SYSCALL(fchownat, chown_at(ctx, ARMOR_FCHOWNAT, 1))

// args: [0] dirfd, [1] mode
SYSCALL(mkdir, path_call(ctx, ARMOR_MKDIR, ARMOR_VIS_FILE, NONE, 0, 1, NONE))
SYSCALL(mkdirat, path_call(ctx, ARMOR_MKDIRAT, ARMOR_VIS_FILE, 0, 1, 2, NONE))

// Working directory changes keep user space's process tree able to resolve relative paths of
// processes that have already exited. Reported with process visibility.
// chdir: path; fchdir: args[0] fd
SYSCALL(chdir, path_call(ctx, ARMOR_CHDIR, ARMOR_VIS_PROCESS, NONE, 0, NONE, NONE))
SYSCALL(fchdir, path_call(ctx, ARMOR_FCHDIR, ARMOR_VIS_PROCESS, 0, NONE, NONE, NONE))

// ---- network -------------------------------------------------------------------------------
// socket args: [0] family, [1] type, [2] protocol
// connect/bind args: [0] fd, [1] addrlen; addr holds the sockaddr
// listen args: [0] fd, [1] backlog
// accept args: [0] fd, [1] peer sockaddr pointer, [2] addrlen pointer, [3] flags; addr = peer

SEC("tracepoint/syscalls/sys_enter_socket")
int enter_socket(enter_ctx *ctx)
{
	struct armor_event *e = begin(ARMOR_SOCKET, ARMOR_VIS_NETWORK);
	if (!e)
		return 0;
	e->args[0] = ctx->args[0];
	e->args[1] = ctx->args[1];
	e->args[2] = ctx->args[2];
	return stash(e);
}
EXIT(socket)

static __always_inline int addr_call(enter_ctx *ctx, __u32 kind)
{
	struct armor_event *e = begin(kind, ARMOR_VIS_NETWORK);
	if (!e)
		return 0;
	e->args[0] = (int)ctx->args[0];
	e->args[1] = ctx->args[2];
	read_sockaddr(e, (void *)ctx->args[1], ctx->args[2]);
	return stash(e);
}

SYSCALL(connect, addr_call(ctx, ARMOR_CONNECT))
SYSCALL(bind, addr_call(ctx, ARMOR_BIND))

SEC("tracepoint/syscalls/sys_enter_listen")
int enter_listen(enter_ctx *ctx)
{
	struct armor_event *e = begin(ARMOR_LISTEN, ARMOR_VIS_NETWORK);
	if (!e)
		return 0;
	e->args[0] = (int)ctx->args[0];
	e->args[1] = (int)ctx->args[1];
	return stash(e);
}
EXIT(listen)

static __always_inline int accept_call(enter_ctx *ctx, __u32 kind)
{
	struct armor_event *e = begin(kind, ARMOR_VIS_NETWORK);
	if (!e)
		return 0;
	e->args[0] = (int)ctx->args[0];
	e->args[1] = ctx->args[1];
	e->args[2] = ctx->args[2];
	if (kind == ARMOR_ACCEPT4)
		e->args[3] = ctx->args[3];
	return stash(e);
}

SYSCALL(accept, accept_call(ctx, ARMOR_ACCEPT))
SYSCALL(accept4, accept_call(ctx, ARMOR_ACCEPT4))

// ---- processes -----------------------------------------------------------------------------

static __always_inline struct armor_event *reserve(__u32 kind, struct task_struct *task)
{
	__u64 cgroup = 0;
	if (!visible(&cgroup, ARMOR_VIS_PROCESS))
		return NULL;
	struct armor_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(ARMOR_STAT_LOST);
		return NULL;
	}
	clear(e);
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup;
	e->kind = kind;
	fill_task(e, task);
	return e;
}

// path = filename as passed to execve; path2 = argv (NUL separated), args[0] = its length,
// args[1] = the pid before exec (differs when a non-leader thread execs), args[2] = the whole
// argv's length (more than args[0] when path2 holds only its start).
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct armor_event *e = reserve(ARMOR_EXEC, p);
	if (!e)
		return 0;
	e->args[1] = old_pid;
	bpf_probe_read_kernel_str(e->path, ARMOR_STR_MAX, BPF_CORE_READ(bprm, filename));
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	e->args[2] = len;
	if (len > ARMOR_STR_MAX - 1)
		len = ARMOR_STR_MAX - 1;
	len &= (ARMOR_STR_MAX - 1);
	if (len > 0 && bpf_probe_read_user(e->path2, len, (void *)start) == 0)
		e->args[0] = len;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// pid = the child's tgid (the record describes the child), ppid = the parent.
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	// Threads are not processes.
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	struct armor_event *e = reserve(ARMOR_FORK, child);
	if (!e)
		return 0;
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->ns_ppid = ns_tgid(parent);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// ret = exit code (wait status encoding).
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0;
	struct armor_event *e = reserve(ARMOR_EXIT, p);
	if (!e)
		return 0;
	e->ret = BPF_CORE_READ(p, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// ---- the syscall filter ---------------------------------------------------------------------
// Syscall rules name any syscall; only the workloads whose rules name a syscall report it, and
// a syscall no workload names costs one array read and a bit test on the raw syscall
// tracepoint (`syscall_any`, the union of every filter), with nothing sent to user space.

// Slot 0: the union of every workload's filter.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct armor_syscalls);
} syscall_any SEC(".maps");

// Workload cgroup id (the visibility entry's; 0 = the host, outside every workload) -> the
// syscalls its rules name.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct armor_syscalls);
} syscall_filters SEC(".maps");

// Syscall number -> where its path argument is: bits 0-3 = the path argument's index + 1,
// bits 4-7 = the directory fd argument's index + 1 (0: none). Written by user space at load.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ARMOR_SYSCALL_BITS);
	__type(key, __u32);
	__type(value, __u8);
} syscall_paths SEC(".maps");

// Thread id -> the filtered syscall it is in (its own table: the syscall may also be one the
// programs above trace).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct armor_event);
} syscall_pending SEC(".maps");

static __always_inline int in_set(const struct armor_syscalls *set, __u64 nr)
{
	return (set->w[(nr >> 6) & (ARMOR_SYSCALL_BITS / 64 - 1)] >> (nr & 63)) & 1;
}

// Whether some workload's filter names syscall `nr` (the only cost of a syscall none names).
static __always_inline int named_anywhere(long nr)
{
	if ((__u64)nr >= ARMOR_SYSCALL_BITS)
		return 0;
	__u32 zero = 0;
	const struct armor_syscalls *any = bpf_map_lookup_elem(&syscall_any, &zero);
	return any && in_set(any, (__u64)nr);
}

// args[0] = the syscall number, args[1..5] = its first five arguments; path = the string its
// path argument points to.
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long nr)
{
	if (!named_anywhere(nr))
		return 0;
	__u64 cgroup = 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	/* A 32-bit syscall (int 0x80) has other numbers and registers: not reported (the manual
	 * says so). An x32 one has bit 30 set in its number, past every bitmap. */
	if (BPF_CORE_READ(task, thread_info.status) & ARMOR_TS_COMPAT)
		return 0;
	cgroup = workload_of(task).id;
	const struct armor_syscalls *f = bpf_map_lookup_elem(&syscall_filters, &cgroup);
	if (!f || !in_set(f, (__u64)nr))
		return 0;
	__u32 me = bpf_get_current_pid_tgid() >> 32;
	__u32 ignore = cfg(ARMOR_CFG_IGNORE_TGID);
	if (ignore != 0 && me == ignore)
		return 0;
	__u32 zero = 0;
	struct armor_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	clear(e);
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup ? cgroup : bpf_get_current_cgroup_id();
	e->kind = ARMOR_SYSCALL;
	fill_task(e, task);
	__u64 a[5];
	a[0] = regs->di;
	a[1] = regs->si;
	a[2] = regs->dx;
	a[3] = regs->r10;
	a[4] = regs->r8;
	e->args[0] = nr;
	for (int i = 0; i < 5; i++)
		e->args[i + 1] = a[i];
	__u32 key = (__u32)nr;
	const __u8 *where = bpf_map_lookup_elem(&syscall_paths, &key);
	if (where && (*where & 0xf)) {
		__u32 idx = (*where & 0xf) - 1;
		if (idx < 5)
			read_user_str(e->path, (void *)a[idx]);
	}
	__u32 tid = e->tid;
	if (bpf_map_update_elem(&syscall_pending, &tid, e, BPF_ANY))
		count(ARMOR_STAT_PENDING_FULL);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	/* A trusted BTF pointer: read directly (a probe-read helper call would double the cost
	 * of a syscall no rule names). */
	if (!named_anywhere(regs->orig_ax))
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, thread_info.status) & ARMOR_TS_COMPAT)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct armor_event *e = bpf_map_lookup_elem(&syscall_pending, &tid);
	if (!e)
		return 0;
	/* Another syscall's record (one that never returned: exit, a thread that execed) is
	 * dropped, not sent with this one's result. */
	if (e->args[0] == regs->orig_ax) {
		e->ret = ret;
		if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
			count(ARMOR_STAT_LOST);
	}
	bpf_map_delete_elem(&syscall_pending, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
