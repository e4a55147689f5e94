//! The rule table: where each rule entry lives in the kernel, mirrored in user space.
//!
//! The kernel finds the `seq` 0 entry of a key in `armor_table`, an array of
//! [`SlotVal`]s shared by every ruleset, without a helper call: it computes the key's
//! [`hash::tag`], reads up to [`abi::WINDOW`] slots from the home slot `tag & mask`, and stops
//! at the slot holding the tag (found), at an empty slot (no such entry) or after the window
//! (the entry may have overflowed into the `armor_rules` hash map). `armor_rules` also holds
//! the entries past the first of a key with several (`seq` 1 and up).
//!
//! [`Table`] keeps the tags of every slot, places entries (the first empty or freed slot of the
//! window, else overflow) and frees them. A freed slot becomes a tombstone
//! ([`abi::TAG_DELETED`]) so the probes of entries placed past it still reach them; a tombstone
//! that no live entry's probe path crosses any more becomes empty again, so updates do not
//! slowly fill the table with tombstones.
//!
//! Updates stay atomic per workload: a new ruleset's entries are written under a new ruleset
//! id (part of the tag) before the workload switches to it, and the old id's slots are freed
//! after. Two keys whose 64-bit tags collide inside one window would share a slot; like a path
//! hash collision, that is the residual risk of hashing (the tag mixes the keyed path hash).

use crate::abi::{self, RuleKey, RuleVal, SlotVal};
use crate::hash;

/// Where a probe for a tag ends (`armor_find`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// The slot holding the tag.
    Slot(u32),
    /// An empty slot ended the probe: no entry has the tag.
    Absent,
    /// The window was full: the entry, if any, is in `armor_rules`.
    Overflow,
}

/// Where one ruleset's entries go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// Table slots to write: index and content.
    pub slots: Vec<(u32, SlotVal)>,
    /// Entries for `armor_rules`: chain entries past `seq` 0 and keys whose window was full.
    pub map: Vec<(RuleKey, RuleVal)>,
}

impl Placement {
    /// Entries placed in the table.
    pub fn in_table(&self) -> usize {
        self.slots.len()
    }

    /// `seq` 0 entries that overflowed into the map.
    pub fn overflowed(&self) -> usize {
        self.map.iter().filter(|(k, _)| k.seq == 0).count()
    }
}

/// The tags of every slot of the rule table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    tags: Vec<u64>,
    mask: u32,
}

impl Table {
    /// An empty table of `slots` slots rounded up to a power of two (at least
    /// [`abi::WINDOW`], at most 2^31).
    pub fn new(slots: u32) -> Self {
        let n = slots.clamp(abi::WINDOW, 1 << 31).next_power_of_two();
        Self {
            tags: vec![abi::TAG_EMPTY; n as usize],
            mask: n - 1,
        }
    }

    /// A table with room for `entries` entries at a load of at most one half.
    pub fn for_entries(entries: usize) -> Self {
        Self::new(u32::try_from(entries.saturating_mul(2)).unwrap_or(1 << 31))
    }

    /// Slots (a power of two): the `max_entries` of `armor_table`.
    pub fn slots(&self) -> u32 {
        self.mask + 1
    }

    /// `slots() - 1`: the `armor_table_mask` the kernel program is loaded with.
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// Slots in use (not empty and not freed).
    pub fn used(&self) -> usize {
        self.tags.iter().filter(|t| **t > abi::TAG_DELETED).count()
    }

    fn at(&self, home: u64, k: u32) -> u32 {
        (home as u32).wrapping_add(k) & self.mask
    }

    fn tag_at(&self, idx: u32) -> u64 {
        self.tags
            .get(idx as usize)
            .copied()
            .unwrap_or(abi::TAG_EMPTY)
    }

    /// The probe for `tag`, exactly as the kernel runs it.
    pub fn find(&self, tag: u64) -> Found {
        for k in 0..abi::WINDOW {
            let idx = self.at(tag, k);
            match self.tag_at(idx) {
                abi::TAG_EMPTY => return Found::Absent,
                t if t == tag => return Found::Slot(idx),
                _ => {}
            }
        }
        Found::Overflow
    }

    /// Claims a slot for `tag`: the first empty or freed slot of its window, or `None` when
    /// the window is full.
    pub fn place(&mut self, tag: u64) -> Option<u32> {
        let idx = (0..abi::WINDOW)
            .map(|k| self.at(tag, k))
            .find(|i| self.tag_at(*i) <= abi::TAG_DELETED)?;
        let t = self.tags.get_mut(idx as usize)?;
        *t = tag;
        Some(idx)
    }

    /// Frees slot `idx`. Returns every slot whose tag changed and its new tag
    /// ([`abi::TAG_DELETED`] or [`abi::TAG_EMPTY`]), for the kernel copy.
    pub fn free(&mut self, idx: u32) -> Vec<(u32, u64)> {
        let idx = idx & self.mask;
        if self.tag_at(idx) <= abi::TAG_DELETED {
            return Vec::new();
        }
        self.set(idx, abi::TAG_DELETED);
        let mut changed = Vec::new();
        // The tombstones that only this entry's probe path needed lie before it in its window.
        for back in (0..abi::WINDOW).rev() {
            let d = idx.wrapping_sub(back) & self.mask;
            if self.tag_at(d) == abi::TAG_DELETED && !self.on_live_path(d) {
                self.set(d, abi::TAG_EMPTY);
                changed.push((d, abi::TAG_EMPTY));
            }
        }
        if self.tag_at(idx) == abi::TAG_DELETED {
            changed.push((idx, abi::TAG_DELETED));
        }
        changed
    }

    /// Whether a probe for a live entry passes slot `d` (from the entry's home slot to the
    /// entry's slot): then `d` must not read as empty.
    fn on_live_path(&self, d: u32) -> bool {
        (1..abi::WINDOW).any(|k| {
            let j = d.wrapping_add(k) & self.mask;
            let t = self.tag_at(j);
            t > abi::TAG_DELETED && (j.wrapping_sub(t as u32) & self.mask) >= k
        })
    }

    fn set(&mut self, idx: u32, tag: u64) {
        if let Some(t) = self.tags.get_mut(idx as usize) {
            *t = tag;
        }
    }

    /// Sets slot `idx` to `tag` as found in the kernel (a table an earlier enforcer filled):
    /// entries, tombstones and empty slots alike, so that placing and freeing go on from the
    /// kernel's state.
    pub fn restore(&mut self, idx: u32, tag: u64) {
        self.set(idx & self.mask, tag);
    }

    /// Places the entries of one ruleset: each `seq` 0 entry in the table when its window has
    /// room, in the map otherwise; entries past `seq` 0 in the map.
    pub fn place_all(&mut self, rules: &[(RuleKey, RuleVal)]) -> Placement {
        let mut p = Placement::default();
        for (k, v) in rules {
            if k.seq == 0 {
                let tag = hash::tag(k);
                if let Some(idx) = self.place(tag) {
                    p.slots.push((idx, SlotVal::new(tag, *v)));
                    continue;
                }
            }
            p.map.push((*k, *v));
        }
        p
    }

    /// Frees the slots of `p`; returns the slots to rewrite (see [`Table::free`]), in order.
    pub fn free_all(&mut self, p: &Placement) -> Vec<(u32, u64)> {
        p.slots
            .iter()
            .flat_map(|(idx, _)| self.free(*idx))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use crate::abi::kind;

    fn key(ruleset: u32, i: u64) -> RuleKey {
        RuleKey {
            ruleset,
            kind: kind::FILE_PATH,
            seq: 0,
            pad: 0,
            target: hash::path(7, &format!("/srv/f{i}")),
            source: 0,
        }
    }

    fn val(rule: u32) -> RuleVal {
        RuleVal {
            rule,
            count: 1,
            ..RuleVal::default()
        }
    }

    fn lookup(t: &Table, p: &Placement, k: &RuleKey) -> Option<RuleVal> {
        match t.find(hash::tag(k)) {
            Found::Slot(i) => p.slots.iter().find(|(j, _)| *j == i).map(|(_, s)| s.val),
            Found::Absent => None,
            Found::Overflow => p.map.iter().find(|(j, _)| j == k).map(|(_, v)| *v),
        }
    }

    #[test]
    fn every_entry_is_found_and_absent_keys_are_not() {
        let rules: Vec<_> = (0..10_000u64).map(|i| (key(1, i), val(i as u32))).collect();
        let mut t = Table::for_entries(rules.len());
        assert_eq!(t.slots(), 32_768);
        let p = t.place_all(&rules);
        assert_eq!(p.in_table() + p.overflowed(), 10_000);
        // At a load under one third almost every entry fits its window.
        assert!(p.overflowed() < 50, "{} overflowed", p.overflowed());
        for (k, v) in &rules {
            assert_eq!(lookup(&t, &p, k), Some(*v));
        }
        for i in 10_000..20_000u64 {
            assert_eq!(lookup(&t, &p, &key(1, i)), None);
            // Same target, another ruleset.
            assert_eq!(lookup(&t, &p, &key(2, i - 10_000)), None);
        }
    }

    #[test]
    fn a_full_window_overflows_into_the_map() {
        let rules: Vec<_> = (0..100u64).map(|i| (key(1, i), val(i as u32))).collect();
        let mut t = Table::new(16);
        let p = t.place_all(&rules);
        assert_eq!(p.in_table(), 16);
        assert_eq!(p.overflowed(), 84);
        for (k, v) in &rules {
            assert_eq!(lookup(&t, &p, k), Some(*v));
        }
        assert_eq!(lookup(&t, &p, &key(1, 1_000)), None);
    }

    #[test]
    fn chain_entries_go_to_the_map() {
        let mut k1 = key(1, 1);
        k1.seq = 1;
        let mut t = Table::new(64);
        let p = t.place_all(&[(key(1, 1), val(1)), (k1, val(2))]);
        assert_eq!(p.slots.len(), 1);
        assert_eq!(p.map, vec![(k1, val(2))]);
    }

    #[test]
    fn freeing_keeps_later_entries_reachable_and_empties_dead_runs() {
        // Every tag homes to slot 0 of a 64-slot table: one run.
        let mut t = Table::new(64);
        let tags: Vec<u64> = (1..=5u64).map(|i| i << 32 | 64).collect();
        let idx: Vec<u32> = tags.iter().map(|g| t.place(*g).unwrap()).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        // Freeing the middle leaves a tombstone: the entries behind it stay reachable.
        assert_eq!(t.free(2), vec![(2, abi::TAG_DELETED)]);
        assert_eq!(t.find(tags[3]), Found::Slot(3));
        assert_eq!(t.find(tags[4]), Found::Slot(4));
        assert_eq!(t.find(tags[2]), Found::Absent);
        // Freeing the last of the run empties it; the tombstone at 2 is still on 3's path.
        assert_eq!(t.free(4), vec![(4, abi::TAG_EMPTY)]);
        // Freeing 3 empties it and the tombstone at 2, which no live path crosses any more.
        assert_eq!(t.free(3), vec![(2, abi::TAG_EMPTY), (3, abi::TAG_EMPTY)]);
        assert_eq!(t.used(), 2);
        assert_eq!(t.find(tags[1]), Found::Slot(1));
        // A freed slot is claimed again.
        assert_eq!(t.place(99 << 32 | 64), Some(2));
        assert!(t.free(40).is_empty());
    }

    #[test]
    fn updates_do_not_fill_the_table() {
        let mut t = Table::new(4096);
        let mut live: Option<Placement> = None;
        for round in 0..50u32 {
            let rules: Vec<_> = (0..1_000u64)
                .map(|i| (key(round + 1, i), val(i as u32)))
                .collect();
            let p = t.place_all(&rules);
            // Old and new together fill the table to one half while they overlap: about 1 %
            // overflows, round after round (tombstones are reused, not accumulated).
            assert!(p.overflowed() <= 25, "round {round}: {}", p.overflowed());
            let in_table = p.in_table();
            if let Some(old) = live.replace(p) {
                t.free_all(&old);
            }
            assert_eq!(t.used(), in_table);
        }
        // Only tombstones on live entries' probe paths remain.
        let tombstones = t.tags.iter().filter(|g| **g == abi::TAG_DELETED).count();
        assert!(tombstones < 512, "{tombstones} tombstones");
        assert!((0..t.slots()).all(|d| t.tag_at(d) != abi::TAG_DELETED || t.on_live_path(d)));
    }
}
