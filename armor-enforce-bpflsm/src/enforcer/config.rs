//! Capacities and options ([`Config`]): every map size comes from here.

use super::*;

/// Capacities and options. Every map size comes from here; nothing is a small fixed limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Rule entries of all workloads together (an update briefly needs the old and the new
    /// entries of one workload at once): the capacity of the `armor_rules` hash map, which holds
    /// what the rule table does not.
    pub max_rule_entries: u32,
    /// Slots of the rule table (rounded up to a power of two; 24 bytes each, preallocated). The
    /// kernel finds an entry in the table without a helper call; an entry that does not fit its
    /// probe window goes to the `armor_rules` map, which is slower but just as exact. At most
    /// half full, almost every entry fits (`table`).
    pub table_slots: u32,
    /// Bits of the filter shared by all rulesets (`filter`; rounded up to a power of
    /// two, an eighth of a byte each, preallocated). Two bits per rule key: with 2^21 bits, a
    /// probe for a key that does not exist passes the filter about once in 190 times while
    /// 65,536 keys are installed. A fuller filter costs useless probes, never a missed rule.
    pub filter_bits: u32,
    /// Workloads (cgroups) that can be managed, plus one for the host (about 120 bytes of
    /// kernel memory each, preallocated: the map entry holds the ruleset's description).
    pub max_workloads: u32,
    /// Open files tracked so `file_permission` skips the ones decided at open.
    pub max_tracked_files: u32,
    /// Alerts per second and workload before the kernel drops (and counts) them; 0 = no limit.
    /// [`BpfLsm::set_alerts_per_sec`] changes it while the enforcer runs.
    pub alerts_per_sec: u32,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// How many cgroup levels above a task's own are searched for its workload (default: all,
    /// so a container's sub-cgroups at any depth keep its rules; the search is one map lookup
    /// per level).
    pub max_cgroup_level: u32,
    /// States of one glob automaton (one workload, one category) at most; at most
    /// `abi::DFA_STATES`. A workload whose globs need more keeps them out of the kernel, and
    /// `compile` lists each of their rules as unenforceable.
    pub max_glob_states: u32,
    /// Glob automata in the kernel at once (about 90 KiB each, allocated on use; an update
    /// briefly holds a workload's old and new automata).
    pub max_glob_automata: u32,
    /// The path hash key; `None` draws one from `/dev/urandom` at load.
    pub hash_key: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_rule_entries: 1 << 20,
            table_slots: 1 << 17,
            filter_bits: 1 << 21,
            max_workloads: 1 << 14,
            max_tracked_files: 1 << 16,
            alerts_per_sec: 1000,
            ring_bytes: 1 << 22,
            max_cgroup_level: u32::MAX,
            max_glob_states: DEFAULT_MAX_GLOB_STATES,
            max_glob_automata: 1 << 10,
            hash_key: None,
        }
    }
}
