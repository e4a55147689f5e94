//! The filter: which rule keys may exist, for every ruleset at once, mirrored in user space.
//!
//! Most probes of a decision find nothing (the directory entries of a path's prefixes, the
//! exact path of a file no rule names). The kernel asks the filter first (`armor_maybe`): a
//! Bloom filter over the keys (ruleset, kind, target) of every installed ruleset's entries, two
//! bits per key in one word ([`hash::filter_bits`]), in the array `armor_filter` of 64-bit
//! words: one array read per test.
//! A probe whose key misses a bit reads no rule. The source of a key is not part of it, so one
//! filter test covers a key's "fromSource" and "any source" entries.
//!
//! The filter is shared by all rulesets, so its memory follows the number of rules, not of
//! workloads, and the decision reads it without a helper call (array lookups are inlined by the
//! verifier). [`Filter`] counts the keys behind every bit: installing a ruleset sets its bits
//! before any workload points at it, and removing one clears only the bits no other installed
//! ruleset's key needs, after the workload has moved on. A set bit is never cleared while a key
//! behind it is installed, so the filter never hides an entry; bits of keys removed a moment ago
//! only cost a useless probe.

use std::collections::HashMap;

use crate::abi::RuleKey;
use crate::hash;

/// The fewest bits a filter has (one word).
pub const MIN_BITS: u32 = 64;
/// The most bits a filter has (64 MiB of words).
pub const MAX_BITS: u32 = 1 << 29;

/// The filter's words and the number of installed keys behind every set bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    mask: u32,
    words: Vec<u64>,
    counts: HashMap<u32, u32>,
    /// Bits held for keys that are not known one by one ([`Filter::hold`]).
    held: Vec<u32>,
}

impl Filter {
    /// An empty filter of `bits` bits, rounded up to a power of two within [`MIN_BITS`] and
    /// [`MAX_BITS`].
    pub fn new(bits: u32) -> Self {
        let bits = bits.clamp(MIN_BITS, MAX_BITS).next_power_of_two();
        Self {
            mask: bits - 1,
            words: vec![0; (bits / 64) as usize],
            counts: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// A filter sized for `entries` keys alone: 32 bits per key (about 1 % of absent keys pass).
    pub fn for_entries(entries: usize) -> Self {
        Self::new(u32::try_from(entries.saturating_mul(32)).unwrap_or(MAX_BITS))
    }

    /// Bits - 1 (`armor_filter_mask`).
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// Words of the `armor_filter` array.
    pub fn words(&self) -> u32 {
        self.mask / 64 + 1
    }

    /// Counts the `seq` 0 keys of `keys` in; returns the words whose value changed, with their
    /// new value, in index order.
    pub fn add<'a>(&mut self, keys: impl IntoIterator<Item = &'a RuleKey>) -> Vec<(u32, u64)> {
        let mut changed = Vec::new();
        for k in keys.into_iter().filter(|k| k.seq == 0) {
            for b in self.bits_of(k) {
                let c = self.counts.entry(b).or_insert(0);
                *c = c.saturating_add(1);
                if *c == 1 {
                    changed.push(b / 64);
                    if let Some(w) = self.words.get_mut((b / 64) as usize) {
                        *w |= 1u64 << (b % 64);
                    }
                }
            }
        }
        self.report(changed)
    }

    /// Counts the `seq` 0 keys of `keys` (counted in before) out; returns the words whose value
    /// changed (bits no installed key needs any more), with their new value, in index order.
    pub fn remove<'a>(&mut self, keys: impl IntoIterator<Item = &'a RuleKey>) -> Vec<(u32, u64)> {
        let mut changed = Vec::new();
        for k in keys.into_iter().filter(|k| k.seq == 0) {
            for b in self.bits_of(k) {
                self.uncount(b, &mut changed);
            }
        }
        self.report(changed)
    }

    /// Counts bit `b` out once; when nothing needs it any more it is cleared and its word noted
    /// in `changed`.
    fn uncount(&mut self, b: u32, changed: &mut Vec<u32>) {
        let Some(c) = self.counts.get_mut(&b) else {
            return;
        };
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.counts.remove(&b);
            changed.push(b / 64);
            if let Some(w) = self.words.get_mut((b / 64) as usize) {
                *w &= !(1u64 << (b % 64));
            }
        }
    }

    /// Keeps the set bits of `word` (word `idx` of a filter found in the kernel, whose keys
    /// are not known one by one: an earlier enforcer's) set, each counted as one key, until
    /// [`Filter::release_held`]. Returns the word's new value when it changed.
    pub fn hold(&mut self, idx: u32, word: u64) -> Option<(u32, u64)> {
        let w = self.words.get_mut(idx as usize)?;
        let before = *w;
        for bit in (0..64).filter(|b| word >> b & 1 == 1) {
            let b = idx * 64 + bit;
            let c = self.counts.entry(b).or_insert(0);
            *c = c.saturating_add(1);
            self.held.push(b);
        }
        *w |= word;
        (*w != before).then_some((idx, *w))
    }

    /// Counts the bits [`Filter::hold`] kept out again; returns the words whose value changed
    /// (bits no installed key needs), with their new value, in index order.
    pub fn release_held(&mut self) -> Vec<(u32, u64)> {
        let mut changed = Vec::new();
        for b in std::mem::take(&mut self.held) {
            self.uncount(b, &mut changed);
        }
        self.report(changed)
    }

    /// Whether an entry of `ruleset` with (`kind`, `target`) may be installed (`armor_maybe`):
    /// false means none is.
    pub fn maybe(&self, ruleset: u32, kind: u8, target: u64) -> bool {
        hash::filter_bits(self.mask, ruleset, kind, target)
            .iter()
            .all(|b| {
                self.words
                    .get((b / 64) as usize)
                    .is_some_and(|w| w >> (b % 64) & 1 == 1)
            })
    }

    /// Set bits.
    pub fn ones(&self) -> usize {
        self.counts.len()
    }

    /// The key's bits, each once (the two can coincide).
    fn bits_of(&self, k: &RuleKey) -> impl Iterator<Item = u32> + use<> {
        let [a, b] = hash::filter_bits(self.mask, k.ruleset, k.kind, k.target);
        std::iter::once(a).chain((b != a).then_some(b))
    }

    fn report(&self, mut idx: Vec<u32>) -> Vec<(u32, u64)> {
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .filter_map(|i| self.words.get(i as usize).map(|w| (i, *w)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::kind;

    fn key(ruleset: u32, target: u64) -> RuleKey {
        RuleKey {
            ruleset,
            kind: kind::FILE_PATH,
            seq: 0,
            pad: 0,
            target,
            source: 0,
        }
    }

    #[test]
    fn installed_keys_pass_and_most_others_do_not() {
        let path = |p: String| hash::path(7, &p);
        let keys: Vec<RuleKey> = (0..1000)
            .map(|t| key(1, path(format!("/srv/f{t}"))))
            .collect();
        let mut f = Filter::for_entries(keys.len());
        let changed = f.add(&keys);
        assert!(!changed.is_empty());
        assert!(keys.iter().all(|k| f.maybe(1, k.kind, k.target)));
        let passed = (0..10_000)
            .filter(|t| f.maybe(1, kind::FILE_PATH, path(format!("/x/{t}"))))
            .count();
        assert!(passed < 200, "{passed} of 10000 absent keys passed");
        // Another ruleset's keys, and another kind's, are other keys.
        let other = keys
            .iter()
            .filter(|k| f.maybe(2, k.kind, k.target) || f.maybe(1, kind::FILE_DIR, k.target))
            .count();
        assert!(
            other < 50,
            "{other} keys of ruleset 2 or of directories passed"
        );
    }

    #[test]
    fn the_default_size_passes_about_one_absent_key_in_190() {
        // `Config::filter_bits` documents this rate for 65,536 installed keys.
        let path = |p: String| hash::path(11, &p);
        let keys: Vec<RuleKey> = (0..65_536)
            .map(|t| key(t % 64 + 1, path(format!("/srv/{t}"))))
            .collect();
        let mut f = Filter::new(1 << 21);
        f.add(&keys);
        let passed = (0..100_000)
            .filter(|t| f.maybe(t % 64 + 1, kind::FILE_PATH, path(format!("/x/{t}"))))
            .count();
        assert!(
            (300..800).contains(&passed),
            "{passed} of 100000 absent keys passed"
        );
    }

    #[test]
    fn small_targets_share_a_word_and_stay_apart() {
        // Capabilities, protocols and glob indexes are small numbers: their bits fall into one
        // word per ruleset and kind, one position each, so an absent one passes only when its
        // position is the word's shared bit.
        let caps: Vec<RuleKey> = [0u64, 1, 12, 21, 38]
            .iter()
            .map(|c| RuleKey {
                kind: kind::CAP,
                ..key(3, *c)
            })
            .collect();
        let mut f = Filter::new(1 << 16);
        assert_eq!(f.add(&caps).len(), 1);
        assert!(caps.iter().all(|k| f.maybe(3, kind::CAP, k.target)));
        let absent = (0..41u64)
            .filter(|c| !caps.iter().any(|k| k.target == *c))
            .filter(|c| f.maybe(3, kind::CAP, *c))
            .count();
        assert!(absent <= 1, "{absent} absent capabilities passed");
    }

    #[test]
    fn held_bits_stay_until_released_and_keep_what_new_keys_need() {
        let mut f = Filter::new(1 << 12);
        let old = key(7, 1234);
        let mut found = Filter::new(1 << 12);
        assert_eq!(f.hold(0, 0), None);
        let words = found.add([&old]);
        // A filter found in the kernel: its words are held, whatever keys made them.
        for (i, w) in &words {
            assert_eq!(f.hold(*i, *w), Some((*i, *w)));
        }
        assert!(f.maybe(7, old.kind, 1234));
        let new = key(8, 1234);
        f.add([&new]);
        let changed = f.release_held();
        assert!(f.maybe(8, new.kind, 1234), "a new key keeps its bits");
        assert!(!changed.is_empty());
        // Released: only the new key's bits are left, the words rewritten say so.
        let mut only_new = Filter::new(1 << 12);
        only_new.add([&new]);
        assert_eq!(f.words, only_new.words, "{changed:?}");
        assert!(f.release_held().is_empty());
    }

    #[test]
    fn removing_one_ruleset_keeps_the_bits_another_needs() {
        let a: Vec<RuleKey> = (0..500).map(|t| key(1, t)).collect();
        // The same targets under another ruleset.
        let b: Vec<RuleKey> = (0..500).map(|t| key(2, t)).collect();
        // A small filter: bits are shared between the two rulesets.
        let mut f = Filter::new(1024);
        f.add(&a);
        f.add(&b);
        let cleared = f.remove(&a);
        assert!(b.iter().all(|k| f.maybe(2, k.kind, k.target)));
        // Every word reported carries its final value.
        for (i, w) in &cleared {
            assert_eq!(f.words.get(*i as usize), Some(w));
        }
        f.remove(&b);
        assert_eq!(f.ones(), 0);
        assert!(f.words.iter().all(|w| *w == 0));
    }

    #[test]
    fn chain_entries_are_not_counted_and_sizes_are_powers_of_two() {
        let mut chained = key(1, 5);
        chained.seq = 1;
        let mut f = Filter::new(100);
        assert_eq!(f.mask(), 127);
        assert_eq!(f.words(), 2);
        assert!(f.add([&chained]).is_empty());
        assert_eq!(Filter::new(0).mask(), 63);
        assert_eq!(Filter::new(u32::MAX).mask(), MAX_BITS - 1);
    }
}
