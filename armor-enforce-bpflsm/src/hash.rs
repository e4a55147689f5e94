//! The keyed path hash computed by the kernel's prefix pass, mirrored exactly here
//! (`bpf/armor_match.h`: `armor_comp_hash`, `armor_step`, `armor_extend`, `armor_root`).
//!
//! A path is hashed one component at a time from the mount-namespace root: `root(key)`, then
//! `step(h, comp(key, name))` per component, so one pass yields the hash of every prefix (`/`,
//! `/etc`, `/etc/ssl`, …). A component is hashed eight bytes at a time. The key is drawn at
//! random when the enforcer loads, so a workload cannot aim a file name at the hash of a rule it
//! does not know the key of. The hash is not cryptographic and a hit is not verified against the
//! full path (the alert carries the path, truncated to 256 bytes, for review); a 64-bit
//! collision between two of a workload's paths is the residual risk.
//!
//! `step` is one multiply and one shift, not the two rounds of `extend`: the component's own
//! hash is already keyed and mixed, and `step(h, ·)` is a bijection for a fixed prefix `h` (as is
//! `step(·, c)` for a fixed component), so two paths of the same length that differ in one
//! component never collide, whatever the key. The chain of steps is the one serial computation
//! of a decision (each prefix needs the previous one); the second round cost ≈ 10 ns per
//! decision on the benchmark's six components. Rule keys, table tags and inode targets keep the
//! two-round `extend`.

const P1: u64 = 0x9e37_79b9_7f4a_7c15;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;

/// The hash of one path component (a file name, no `/`).
pub fn comp(key: u64, name: &[u8]) -> u64 {
    let len = name.len() as u64;
    let mut h = key ^ len.wrapping_mul(P1);
    for chunk in name.chunks(8) {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(chunk) {
            *d = *s;
        }
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(P1);
        h ^= h >> 29;
    }
    h
}

/// The target of the [`crate::abi::kind::PROC_ARG`] entry of argument `arg` of rule `rule`
/// (`armor_arg_target`): the argument's keyed hash (as a name's) extended by the rule.
pub fn arg_target(key: u64, rule: u32, arg: &str) -> u64 {
    extend(comp(key, arg.as_bytes()), u64::from(rule))
}

/// The hash of the root directory `/`.
pub fn root(key: u64) -> u64 {
    fix(extend(key ^ P3, P2))
}

/// The hash of `prefix` extended by one component whose [`comp`] hash is `c`.
pub fn extend(prefix: u64, c: u64) -> u64 {
    let mut h = (prefix ^ c).wrapping_mul(P2);
    h ^= h >> 32;
    h = h.wrapping_mul(P3);
    h ^= h >> 29;
    fix(h)
}

/// The target of an inode entry: the kernel's `s_dev` (`(major << 20) | minor`) and inode
/// One component into a path's prefix hash (`armor_step` in the kernel): one multiply and one
/// shift, a bijection of `prefix ^ c`; `c` is already the keyed hash of the component.
pub fn step(prefix: u64, c: u64) -> u64 {
    let mut h = (prefix ^ c).wrapping_mul(P2);
    h ^= h >> 32;
    fix(h)
}

/// number (`armor_inode_target`).
pub fn inode_target(dev: u32, ino: u64) -> u64 {
    extend(fix(ino), u64::from(dev))
}

/// The mix of a rule key without its source (`armor_key_hash`): its ruleset, kind and target.
/// The table tag extends it by the source ([`tag`]).
pub fn key_hash(ruleset: u32, kind: u8, target: u64) -> u64 {
    let k = (u64::from(ruleset) << 8 | u64::from(kind)).wrapping_mul(P1);
    extend(k, target)
}

/// The two bits of the filter ([`crate::filter`], `mask + 1` bits) that stand for the rule
/// keys of `ruleset` with (`kind`, `target`), whatever their source (`armor_maybe`): the
/// target mixed with the ruleset and kind by one multiply into `v` (targets are keyed hashes
/// already, or small numbers), both bits in word `(v >> 32) % words`, at `v % 64` and
/// `(v >> 6) % 64`, so the kernel reads one word per test.
pub fn filter_bits(mask: u32, ruleset: u32, kind: u8, target: u64) -> [u32; 2] {
    let v = target ^ (u64::from(ruleset) << 8 | u64::from(kind)).wrapping_mul(P1);
    // Masked by a u32 and by 63: the casts keep every bit.
    let word = ((v >> 32) & u64::from(mask >> 6)) as u32;
    [
        word * 64 + (v & 63) as u32,
        word * 64 + ((v >> 6) & 63) as u32,
    ]
}

/// The rule table tag of `key` (`armor_tag`): its [`key_hash`] extended by its source, never
/// [`crate::abi::TAG_EMPTY`] or [`crate::abi::TAG_DELETED`]. `seq` is not part of it: only
/// `seq` 0 entries live in the table.
pub fn tag(key: &crate::abi::RuleKey) -> u64 {
    let h = extend(key_hash(key.ruleset, key.kind, key.target), key.source ^ P2);
    if h > crate::abi::TAG_DELETED {
        h
    } else {
        h + 2
    }
}

/// 0 means "any source" in rule keys, so a path hash is never 0.
fn fix(h: u64) -> u64 {
    if h == 0 { 1 } else { h }
}

/// The non-empty components of `path` (`/a//b/` → `a`, `b`).
pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// The hash of every prefix of `path`, the root first: `[h(/), h(/a), h(/a/b)]`.
pub fn prefixes(key: u64, path: &str) -> Vec<u64> {
    let mut out = vec![root(key)];
    let mut h = root(key);
    for c in components(path) {
        h = step(h, comp(key, c.as_bytes()));
        out.push(h);
    }
    out
}

/// The hash of the whole of `path`.
pub fn path(key: u64, path: &str) -> u64 {
    components(path).fold(root(key), |h, c| step(h, comp(key, c.as_bytes())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "test code")]
    use super::*;

    #[test]
    fn prefixes_end_with_the_path_hash_and_separate_orders() {
        let k = 42;
        let p = prefixes(k, "/etc/ssl/certs");
        assert_eq!(p.len(), 4);
        assert_eq!(p[3], path(k, "/etc/ssl/certs"));
        assert_eq!(p[1], path(k, "/etc"));
        assert_eq!(p[0], path(k, "/"));
        assert_ne!(path(k, "/a/b"), path(k, "/b/a"));
        assert_ne!(path(k, "/ab"), path(k, "/a/b"));
        assert_ne!(path(k, "/etc"), path(k + 1, "/etc"));
        assert_eq!(path(k, "/etc/"), path(k, "/etc"));
    }

    #[test]
    fn one_changed_component_always_changes_the_path_hash() {
        // step is a bijection in each argument: paths of one length differing in a single
        // component cannot collide (checked over many names and every position).
        let k = 0x5eed;
        let names: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
        for pos in 0..4 {
            let mut seen = std::collections::HashSet::new();
            for n in &names {
                let mut comps = ["usr", "share", "app", "conf"];
                comps[pos] = n;
                assert!(seen.insert(path(k, &format!("/{}", comps.join("/")))));
            }
        }
        // Injective in the component for a fixed prefix, and in the prefix for a fixed one.
        let h = root(k);
        let mut by_comp = std::collections::HashSet::new();
        let mut by_prefix = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            assert!(by_comp.insert(step(h, i.wrapping_mul(P3))));
            assert!(by_prefix.insert(step(i.wrapping_mul(P1) | 1, h)));
        }
    }

    #[test]
    fn long_and_word_boundary_names_differ() {
        let k = 7;
        let a = "x".repeat(255);
        let mut b = a.clone();
        b.replace_range(254.., "y");
        assert_ne!(comp(k, a.as_bytes()), comp(k, b.as_bytes()));
        assert_ne!(comp(k, b"12345678"), comp(k, b"12345678\0"));
        assert_ne!(comp(k, b""), comp(k, b"\0"));
    }

    #[test]
    fn tags_separate_every_part_of_the_key() {
        let key = |ruleset, kind, target, source| crate::abi::RuleKey {
            ruleset,
            kind,
            seq: 0,
            pad: 0,
            target,
            source,
        };
        let base = tag(&key(1, 4, 77, 0));
        assert!(base > crate::abi::TAG_DELETED);
        assert_ne!(base, tag(&key(2, 4, 77, 0)));
        assert_ne!(base, tag(&key(1, 5, 77, 0)));
        assert_ne!(base, tag(&key(1, 4, 78, 0)));
        assert_ne!(base, tag(&key(1, 4, 77, 9)));
        // Target and source do not commute.
        assert_ne!(tag(&key(1, 4, 5, 9)), tag(&key(1, 4, 9, 5)));
        let mut seq1 = key(1, 4, 77, 0);
        seq1.seq = 1;
        assert_eq!(base, tag(&seq1));
    }
}
