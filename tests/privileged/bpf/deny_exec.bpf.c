// SPDX-License-Identifier: GPL-2.0
// The smallest BPF-LSM enforcement the test kernel must support: deny an exec of a listed
// executable (by inode number) from a listed cgroup v2 (by id) with EPERM. Loaded by
// src/bpf.rs; the maps are filled from user space.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1

// cgroup v2 id (the inode number of the cgroup directory) -> unused.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} deny_cgroups SEC(".maps");

// Inode number of the executable file -> unused.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} deny_inodes SEC(".maps");

// Slot 0: how many execs this program denied.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} denied SEC(".maps");

SEC("lsm/bprm_check_security")
int BPF_PROG(deny_exec, struct linux_binprm *bprm, int ret)
{
	// Keep an earlier program's verdict.
	if (ret != 0)
		return ret;
	__u64 cgroup = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&deny_cgroups, &cgroup))
		return 0;
	__u64 ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	if (!bpf_map_lookup_elem(&deny_inodes, &ino))
		return 0;
	__u32 slot = 0;
	__u64 *count = bpf_map_lookup_elem(&denied, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return -EPERM;
}

char LICENSE[] SEC("license") = "GPL";
