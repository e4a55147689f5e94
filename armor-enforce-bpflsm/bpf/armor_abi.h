/* SPDX-License-Identifier: GPL-2.0 */
/* The structures and constants shared with user space. Mirrored field by field by
 * src/abi.rs; the test `abi::tests::layout_matches_the_c_header` checks sizes and offsets. */
#ifndef ARMOR_ABI_H
#define ARMOR_ABI_H

/* Entry kinds in `armor_rules`. */
#define ARMOR_KIND_PROC_PATH 1  /* target: hash of the executed file's full path */
#define ARMOR_KIND_PROC_DIR 2   /* target: hash of a directory path */
#define ARMOR_KIND_PROC_NAME 3  /* target: hash of the executable's basename */
#define ARMOR_KIND_FILE_PATH 4
#define ARMOR_KIND_FILE_DIR 5
#define ARMOR_KIND_NET_PROTO 6  /* target: IPPROTO_* */
#define ARMOR_KIND_NET_TYPE 7   /* target: SOCK_* */
#define ARMOR_KIND_NET_ALL 8    /* target: 0 */
#define ARMOR_KIND_CAP 9        /* target: CAP_* number */
#define ARMOR_KIND_PROC_INODE 10 /* target: (dev << 32) ^ ino, see armor_inode_target */
#define ARMOR_KIND_FILE_INODE 11
#define ARMOR_KIND_PROC_DIR_INODE 12 /* a directory by (device, inode): bind mounts */
#define ARMOR_KIND_FILE_DIR_INODE 13
#define ARMOR_KIND_PROC_GLOB 14 /* target: index of the glob in the process automaton */
#define ARMOR_KIND_FILE_GLOB 15 /* target: index of the glob in the file automaton */
#define ARMOR_KIND_PROC_PRESET 16 /* target: ARMOR_PRESET_* of a process preset */
#define ARMOR_KIND_FILE_PRESET 17 /* target: ARMOR_PRESET_* of a file preset */
#define ARMOR_KIND_PROC_ARG 18    /* target: armor_arg_target(argument hash, rule) */

/* Presets (armor_core::rule::PresetKind::number). */
#define ARMOR_PRESET_FILELESS 0 /* filelessExec: exec of a file with link count 0 */
#define ARMOR_PRESET_ANONMAP 1  /* anonymousMapExec: anonymous memory made executable */
#define ARMOR_PRESET_ENV 2      /* protectEnv: open of another process's /proc environ */
#define ARMOR_PRESET_EXEC 3     /* exec: exec by a task with a controlling terminal */
#define ARMOR_PRESET_PROC 4     /* protectProc: open of another process's /proc entry */

/* Entry actions. */
#define ARMOR_ACTION_ALLOW 0
#define ARMOR_ACTION_AUDIT 1
#define ARMOR_ACTION_BLOCK 2

/* Entry flags. */
#define ARMOR_F_READ_ONLY 1
#define ARMOR_F_OWNER_ONLY 2
#define ARMOR_F_RECURSIVE 4
#define ARMOR_F_ARGS 8 /* the rule has allowedArgs: its ARMOR_KIND_PROC_ARG entries list them */

/* allowedArgs: an exec with more arguments (after argv[0]) than this, or with one longer than
 * ARMOR_ARG_MAX bytes, is outside every rule's permitted set. */
#define ARMOR_MAX_ARGS 64
#define ARMOR_ARG_MAX 255

/* Categories (index into the ruleset arrays and `armor_alert.category`). */
#define ARMOR_CAT_PROCESS 0
#define ARMOR_CAT_FILE 1
#define ARMOR_CAT_NETWORK 2
#define ARMOR_CAT_CAPS 3

/* Ruleset flags: bit (category) = the category has fromSource entries; bit 4 + category = it has
 * inode entries; bit 8 = process execname entries; bit 12 + category = directory inode entries;
 * bit 16 + category = a glob automaton in `armor_dfas`. */
#define ARMOR_RS_SOURCE(cat) (1u << (cat))
#define ARMOR_RS_INODE(cat) (1u << (4 + (cat)))
#define ARMOR_RS_NAMES (1u << 8)
#define ARMOR_RS_ARGS (1u << 9) /* entries with ARMOR_F_ARGS: an exec's arguments are read */
#define ARMOR_RS_DIR_INODE(cat) (1u << (12 + (cat)))
#define ARMOR_RS_GLOB(cat) (1u << (16 + (cat)))
/* bit 24 + preset = the ruleset has an entry of that preset */
#define ARMOR_RS_PRESET(p) (1u << (24 + (p)))
#define ARMOR_RS_PRESETS (0x1fu << 24)

/* `armor_alert.detail` of a File alert about memory (the anonymousMapExec preset). */
#define ARMOR_DETAIL_MEMORY 0x40   /* anonymous memory (or a file with no name) made executable */
#define ARMOR_DETAIL_MPROTECT 0x80 /* ... by mprotect (else mmap) */
/* `armor_alert.detail` of a Process alert: the arguments the new program received differ from
 * the ones its allowedArgs rule was decided on (the caller rewrote them during the exec); the
 * task was killed before it ran. */
#define ARMOR_DETAIL_ARGS_CHANGED 0x100

/* Counters (index into the per-CPU `armor_counters` array). */
#define ARMOR_CNT_ALERTS 0          /* alerts written to the ring buffer */
#define ARMOR_CNT_RATE_LIMITED 1    /* alerts dropped by the per-workload rate limit */
#define ARMOR_CNT_RESERVE_FAILED 2  /* alerts lost because the ring buffer was full */
#define ARMOR_CNT_INCOMPLETE 3      /* paths that could not be resolved completely */
#define ARMOR_CNT_INCOMPLETE_DENIED 4 /* ... and were denied because a rule could still match */
#define ARMOR_CNT_BLOCKED 5         /* operations denied */
#define ARMOR_CNT_OVERLAY_SKIPPED 6 /* second (backing file) file_open calls skipped */
#define ARMOR_CNT_ARGS_KILLED 7     /* execs killed: arguments changed after the allowedArgs check */
#define ARMOR_CNT_MAX 8

#define ARMOR_RULE_POSTURE 0xffffffffu /* `armor_alert.rule` for DefaultPosture */
#define ARMOR_ALERT_PATH 256           /* bytes of the path kept in an alert (the tail) */
#define ARMOR_ALERT_F_TRUNCATED 1      /* the path did not fit: its root-most components */
#define ARMOR_ALERT_F_INCOMPLETE 2     /* the path could not be resolved to the root */

/* Key of `armor_rules`: one ruleset's entries for one target and one source. */
struct armor_rule_key {
	__u32 ruleset;
	__u8 kind;
	__u8 seq;    /* several entries for the same target and source: 0, 1, ... */
	__u16 pad;
	__u64 target;
	__u64 source; /* hash of the fromSource executable; 0 = any source */
};

struct armor_rule_val {
	__u32 rank;   /* precedence among rules of the same verdict: lower wins */
	__u32 rule;   /* index into the compiled policy's rules (for the alert) */
	__u8 action;
	__u8 flags;
	__u8 count;   /* in the seq 0 entry: how many entries share this target and source */
	__u8 pad;
	__u32 pad2;
};

struct armor_ruleset {
	__u64 dir_depths[2]; /* process, file: bit d = a directory entry at depth d (63 = 63+) */
	__u8 allow_list[4];  /* per category */
	__u8 posture[4];     /* per category: 1 = block, 0 = audit */
	__u32 flags;
	__u32 pad;
};

/* The filter: a Bloom filter over the (ruleset, kind, target) of every entry of every ruleset,
 * two bits per key in one word (armor_maybe in armor_match.h), in the array `armor_filter` of
 * 64-bit words (armor_filter_mask + 1 bits, a power of two, set by the loader). A probe whose key misses a bit cannot match an entry and reads no rule. User space
 * counts the keys behind every bit and clears a bit only when no installed ruleset needs it. */

/* The rule table: an array of slots holding the seq 0 entry of every ruleset's keys, placed by
 * open addressing (src/table.rs). A key's slot is found within ARMOR_WINDOW slots of its home
 * slot (tag & mask) without a helper call; a key whose window was full when it was placed lives
 * in `armor_rules` instead ("overflow"), where the entries of longer chains (seq >= 1) live too. */
#define ARMOR_WINDOW 8
#define ARMOR_TAG_EMPTY 0   /* never used: a probe stops here */
#define ARMOR_TAG_DELETED 1 /* freed: a probe goes on past it */

struct armor_slot {
	__u64 tag; /* armor_tag() of the key, or ARMOR_TAG_EMPTY / ARMOR_TAG_DELETED */
	struct armor_rule_val val;
};

/* Value of `armor_workloads` (key: cgroup v2 id; key 0 = the host, outside every workload).
 * The active ruleset's id and description travel together: one map update flips both. */
struct armor_workload {
	__u32 ruleset; /* 0 = managed without rules */
	__u32 alerts_per_sec;
	__u32 flags;   /* ARMOR_W_* */
	__u32 pad;
	struct armor_ruleset rs;
};

/* The workload's rules are not in force until a task of the workload executes a program: the
 * container runtime's own setup in a created container (runc init, before it executes the
 * entrypoint) is not subject to them. The first exec clears the flag and is itself decided. */
#define ARMOR_W_UNTIL_EXEC 1u

/* Slot 0 of `armor_config`. */
struct armor_config {
	__u64 hash_key;
	__u32 max_cgroup_level;
	/* Not read by the programs: the ruleset id user space uses next, kept here so that an
	 * agent adopting pinned maps never reuses an id an earlier one wrote. */
	__u32 next_ruleset;
};

/* One alert through the ring buffer. */
struct armor_alert {
	__u64 cgroup;    /* the workload's cgroup id (0: host) */
	__u64 source_hash;
	__u32 rule;      /* ARMOR_RULE_POSTURE for DefaultPosture */
	__u32 pid;
	__u32 uid;
	__u32 detail;    /* file: 1 read | 2 write, or ARMOR_DETAIL_MEMORY (| _MPROTECT); network:
			  * family<<16 | type<<8 | protocol; caps: number */
	__u8 category;
	__u8 action;     /* ARMOR_ACTION_AUDIT or ARMOR_ACTION_BLOCK */
	__u8 flags;
	__u8 pad;
	__u16 path_len;
	__u16 source_len;
	char path[ARMOR_ALERT_PATH];
	char source[ARMOR_ALERT_PATH];
};

/* Glob automata (src/dfa.rs builds them). Sizes are powers of two: indices are masked. */
#define ARMOR_DFA_STATES 4096
#define ARMOR_DFA_CELLS (1 << 15)
#define ARMOR_DFA_MATCHES 4096
#define ARMOR_DFA_START 1 /* state 0 is dead: no glob can match any more */

/* Key of `armor_dfas`: one ruleset's automaton for one category (process or file). */
struct armor_dfa_key {
	__u32 ruleset;
	__u32 category;
};

/* State s on byte b goes to next[(s * nclasses + classes[b]) % CELLS]. When the path ends in
 * state s, the globs matches[off .. off + n] match, with accept[s] = off << 16 | n. */
struct armor_dfa {
	__u32 nstates;
	__u32 nclasses;
	__u32 nmatches;
	__u32 pad;
	__u8 classes[256];
	__u32 accept[ARMOR_DFA_STATES];
	__u16 matches[ARMOR_DFA_MATCHES];
	__u16 next[ARMOR_DFA_CELLS];
};

/* Per-workload alert rate limit state (key: cgroup id). */
struct armor_rate {
	__u64 window_start;
	__u64 count;
};

#endif
