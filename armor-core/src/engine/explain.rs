//! Why the engine decided what it did: [`Explanation`], for `armorctl explain`.

use super::*;

/// Which precedence step settled a decision (for `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A Block rule won among the rules of the highest source specificity.
    BlockRule {
        /// Whether the winning rules had a matching `fromSource`.
        from_source: bool,
    },
    /// An Allow rule won among the rules of the highest source specificity.
    AllowRule {
        /// Whether the winning rules had a matching `fromSource`.
        from_source: bool,
    },
    /// Nothing covered the operation in allow-list mode: the posture decided.
    Posture(PostureAction),
    /// Nothing covered the operation outside allow-list mode.
    NotCovered,
}

/// One rule considered for an event, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Considered<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// Whether it covers the event (target, source and qualifiers).
    pub covers: bool,
    /// Why it does or does not cover it.
    pub why: String,
}

/// A decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation<'a> {
    /// The decision itself.
    pub decision: Decision<'a>,
    /// The precedence step that settled it.
    pub step: Step,
    /// Whether the category is in allow-list mode for the workload.
    pub allow_list: bool,
    /// The workload's posture.
    pub posture: Posture,
    /// Every rule whose target matched, covering or not.
    pub considered: Vec<Considered<'a>>,
    /// Rules of this category the engine does not evaluate (pts, allowedArgs, DNS).
    pub not_evaluated: Vec<String>,
}
