//! How many rules each matching strategy holds, for logs and benchmarks.

use super::*;

/// Summary counts of a compiled policy per strategy, for logs and `armorctl`.
pub fn strategy_counts(rules: &[Rule]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in rules {
        let k = match r.target {
            Target::Path(_) => "exact",
            Target::ExecName(_) => "execname",
            Target::Directory { .. } => "directory",
            Target::Pattern(_) => "glob",
            Target::Protocol(_) => "protocol",
            Target::Capability(_) => "capability",
            Target::Syscall { .. } => "syscall",
            Target::Dns(_) => "dns",
            Target::Preset(_) => "preset",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
