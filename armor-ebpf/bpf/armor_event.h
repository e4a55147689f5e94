/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The record armor-ebpf's tracepoint programs send to user space through the `events` ring
 * buffer. Mirrored by armor-ebpf/src/layout.rs: a test there reads the offsets asserted below
 * and compares them with the Rust decoder's constants, so the two cannot drift apart.
 */
#ifndef ARMOR_EVENT_H
#define ARMOR_EVENT_H

#define ARMOR_STR_MAX 256
#define ARMOR_ADDR_MAX 32

/* Visibility bits (per cgroup, `visibility` map; default in `config[0]`). */
#define ARMOR_VIS_PROCESS 1
#define ARMOR_VIS_FILE 2
#define ARMOR_VIS_NETWORK 4
#define ARMOR_VIS_CAPABILITIES 8

/* Slots of the `config` array. */
#define ARMOR_CFG_DEFAULT_VIS 0
#define ARMOR_CFG_IGNORE_TGID 1
#define ARMOR_CFG_SLOTS 4

/* Slots of the per-CPU `stats` array. */
#define ARMOR_STAT_LOST 0
#define ARMOR_STAT_PENDING_FULL 1
#define ARMOR_STAT_SLOTS 2

/* Event kinds. args[] meaning per kind is documented in src/layout.rs. */
#define ARMOR_EXEC 1
#define ARMOR_FORK 2
#define ARMOR_EXIT 3
#define ARMOR_OPEN 10
#define ARMOR_OPENAT 11
#define ARMOR_OPENAT2 12
#define ARMOR_SOCKET 20
#define ARMOR_CONNECT 21
#define ARMOR_BIND 22
#define ARMOR_LISTEN 23
#define ARMOR_ACCEPT 24
#define ARMOR_ACCEPT4 25
#define ARMOR_UNLINK 30
#define ARMOR_UNLINKAT 31
#define ARMOR_RMDIR 32
#define ARMOR_RENAME 33
#define ARMOR_RENAMEAT 34
#define ARMOR_RENAMEAT2 35
#define ARMOR_CHMOD 36
#define ARMOR_FCHMODAT 37
#define ARMOR_CHOWN 38
#define ARMOR_LCHOWN 39
#define ARMOR_FCHOWNAT 40
#define ARMOR_MKDIR 41
#define ARMOR_MKDIRAT 42
#define ARMOR_CHDIR 43
#define ARMOR_FCHDIR 44
#define ARMOR_SYSCALL 60 /* a syscall a workload's syscall rules name (the syscall filter) */

/* The syscall filter: a bit per x86_64 syscall number (ARMOR_SYSCALL_BITS of them). */
#define ARMOR_SYSCALL_BITS 512
struct armor_syscalls {
	__u64 w[ARMOR_SYSCALL_BITS / 64];
};

struct armor_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u64 cgroup_id;	/* the nearest cgroup with a visibility entry, else the task's */
	__u32 kind;		/* ARMOR_* */
	__u32 pid;		/* host tgid */
	__u32 tid;		/* host thread id */
	__u32 ppid;		/* host tgid of the real parent */
	__u32 uid;
	__u32 gid;
	__u32 pid_ns;		/* inode of the pid namespace (for children) */
	__u32 mnt_ns;		/* inode of the mount namespace */
	__u32 ns_pid;		/* tgid as seen in the task's own pid namespace */
	__u32 ns_ppid;		/* parent's tgid as seen in the parent's pid namespace */
	__s64 ret;		/* syscall return value (exit: exit code) */
	__s64 args[6];
	char comm[16];
	__u8 addr[ARMOR_ADDR_MAX];	/* sockaddr as passed by the caller */
	char path[ARMOR_STR_MAX];	/* first path argument / exec filename */
	char path2[ARMOR_STR_MAX];	/* second path (rename target) / exec argv, NUL separated */
};

_Static_assert(__builtin_offsetof(struct armor_event, ts_ns) == 0, "ts_ns");
_Static_assert(__builtin_offsetof(struct armor_event, cgroup_id) == 8, "cgroup_id");
_Static_assert(__builtin_offsetof(struct armor_event, kind) == 16, "kind");
_Static_assert(__builtin_offsetof(struct armor_event, pid) == 20, "pid");
_Static_assert(__builtin_offsetof(struct armor_event, tid) == 24, "tid");
_Static_assert(__builtin_offsetof(struct armor_event, ppid) == 28, "ppid");
_Static_assert(__builtin_offsetof(struct armor_event, uid) == 32, "uid");
_Static_assert(__builtin_offsetof(struct armor_event, gid) == 36, "gid");
_Static_assert(__builtin_offsetof(struct armor_event, pid_ns) == 40, "pid_ns");
_Static_assert(__builtin_offsetof(struct armor_event, mnt_ns) == 44, "mnt_ns");
_Static_assert(__builtin_offsetof(struct armor_event, ns_pid) == 48, "ns_pid");
_Static_assert(__builtin_offsetof(struct armor_event, ns_ppid) == 52, "ns_ppid");
_Static_assert(__builtin_offsetof(struct armor_event, ret) == 56, "ret");
_Static_assert(__builtin_offsetof(struct armor_event, args) == 64, "args");
_Static_assert(__builtin_offsetof(struct armor_event, comm) == 112, "comm");
_Static_assert(__builtin_offsetof(struct armor_event, addr) == 128, "addr");
_Static_assert(__builtin_offsetof(struct armor_event, path) == 160, "path");
_Static_assert(__builtin_offsetof(struct armor_event, path2) == 416, "path2");
_Static_assert(sizeof(struct armor_event) == 672, "size");

#endif
