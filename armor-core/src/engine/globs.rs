//! Bounds on compiled glob sizes (checked at build time) and the grouped regex sets globs
//! are matched with.

use super::*;

/// Bytes a compiled automaton may take per byte of a glob's regular expression, with a margin:
/// a pattern whose `1 KiB + regex length × this` is within the limit fits without compiling it
/// (the property test `glob_size_bound_holds` checks the bound on generated globs).
pub(super) const GLOB_BYTES_PER_REGEX_BYTE: usize = 1024;

/// Most bytes one lazily built glob set may take (sets larger are split), and the lazy DFA
/// cache of each set.
pub(super) const GLOB_SET_LIMIT: usize = 64 << 20;
pub(super) const GLOB_CACHE_LIMIT: usize = 8 << 20;

/// An upper bound of what `regex` compiles to, in bytes.
pub(super) fn glob_size_bound(regex: &str) -> usize {
    regex
        .len()
        .saturating_add(1)
        .saturating_mul(GLOB_BYTES_PER_REGEX_BYTE)
}

/// Checks that every glob of `rules` compiles within `limit`: a cheap bound first, the real
/// compiler only for a pattern whose bound exceeds it.
pub(super) fn check_glob_sizes(rules: &[Rule], limit: usize) -> Result<(), BuildError> {
    for r in rules {
        let Target::Pattern(g) = &r.target else {
            continue;
        };
        if glob_size_bound(g.regex()) <= limit {
            continue;
        }
        if regex::RegexSetBuilder::new([g.regex()])
            .size_limit(limit)
            .dfa_size_limit(GLOB_CACHE_LIMIT)
            .build()
            .is_err()
        {
            return Err(BuildError::GlobTooLarge {
                policy: format!("{} {}", r.policy.kind, r.policy.display_name()),
                rule: r.origin.field.clone(),
                location: r.origin.location.to_string(),
                pattern: g.as_str().to_string(),
                limit,
            });
        }
    }
    Ok(())
}

/// Compiles `pats` into as few regex sets as fit `limit`, halving a group that does not fit.
/// Every pattern was checked to compile within [`Config::glob_size_limit`] when the policy was
/// built, so a single pattern compiles within `limit` (the larger of that and
/// [`GLOB_SET_LIMIT`]) and no rule is left out; the lazy DFA of each set is bounded too.
pub(super) fn build_glob_sets(
    pats: &[String],
    ids: &[u32],
    limit: usize,
) -> Vec<(RegexSet, Vec<u32>)> {
    let built = regex::RegexSetBuilder::new(pats)
        .size_limit(limit)
        .dfa_size_limit(GLOB_CACHE_LIMIT)
        .build();
    match built {
        Ok(set) => vec![(set, ids.to_vec())],
        Err(e) if pats.len() > 1 => {
            tracing::debug!(error = %e, patterns = pats.len(), "glob set too large; splitting it");
            let mid = pats.len() / 2;
            let (pl, pr) = pats.split_at(mid);
            let (il, ir) = ids.split_at(mid);
            let mut out = build_glob_sets(pl, il, limit);
            out.extend(build_glob_sets(pr, ir, limit));
            out
        }
        Err(e) => {
            // Not reachable: the pattern compiled within a smaller limit when the policy was
            // built. Said loudly if it ever happens.
            tracing::error!(error = %e, rules = ?ids, "glob rule cannot be compiled: it will not match");
            Vec::new()
        }
    }
}
