//! `matchPatterns` globs as one deterministic automaton over path bytes.
//!
//! Every glob of one workload and one category (process, file) becomes part of ONE DFA that
//! the kernel runs once over the resolved path, root to leaf (`/etc/shadow`: the bytes `/`,
//! `e`, `t`, `c`, `/`, `s`, ...). Its final state names every glob that matches the whole
//! path; the kernel then probes the rule map once per matching glob (kind `*_GLOB`, target =
//! the glob's index), so globs join the decision exactly like exact and directory rules.
//!
//! The input is the anchored regular expression armor-core's engine matches with
//! ([`armor_core::glob::Glob::regex`]), so both sides read one definition. Construction:
//!
//! 1. parse that expression (literals, `.`, classes, `(?:…|…)`, `*`, `+`) into a tree;
//! 2. a Thompson NFA over bytes. A single character (`?`, a class, a literal) is one UTF-8
//!    sequence: the engine matches `&str` by Unicode scalar, so `?` must take all bytes of
//!    `é`; bytes that occur in no valid UTF-8 (`C0`, `C1`, `F5`–`FF`) count as one character.
//!    A run (`*`, `**`: a repeated class that takes every non-ASCII character) is compiled
//!    byte-wise, one state with a loop over its ASCII bytes and every byte `80`–`FF`. On valid
//!    UTF-8 both readings accept the same paths (a run can only stop inside a character when
//!    what follows can start there, and nothing but another run can start at a continuation
//!    byte), the automaton is much smaller, and a run also covers names that are not valid
//!    UTF-8 (a Block glob cannot be dodged by an invalid file name). A single character right
//!    before a run (`**` is `[^/].*`) is read byte-wise too, for the same reason, when it
//!    follows another single character (so it starts on a character boundary); after a run it
//!    stays one whole character, which makes the run stop on a boundary (`/*?*` needs two
//!    characters, and the two bytes of `/é` are one);
//! 3. subset construction over byte intervals, stopped at [`RAW_FACTOR`] × the state cap (this
//!    bounds compile time; the cap itself applies to the minimised automaton);
//! 4. Moore minimisation, then byte classes: intervals whose columns are equal are merged;
//! 5. states renumbered breadth-first from the start (0 = dead, 1 = start): deterministic.
//!
//! Not compiled (reported as unenforceable by `compile`): a negated class with a non-ASCII
//! member and a non-ASCII range of more than [`MAX_CLASS_CHARS`] characters.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Characters a non-ASCII class range may enumerate.
pub const MAX_CLASS_CHARS: u32 = 1024;

/// States the subset construction may create, as a multiple of the cap on the minimised
/// automaton.
pub const RAW_FACTOR: usize = 8;

/// Why a glob group was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DfaError {
    /// The expression uses syntax this compiler does not translate.
    #[error("pattern `{pattern}` is not compiled into the kernel automaton: {reason}")]
    Unsupported {
        /// The glob's regular expression.
        pattern: String,
        /// What is not supported.
        reason: &'static str,
    },
    /// The automaton needs more than the configured number of states.
    #[error("the glob automaton needs more than {limit} states")]
    TooManyStates {
        /// The cap that was exceeded.
        limit: usize,
    },
    /// The automaton does not fit the kernel's value (`struct armor_dfa`).
    #[error(
        "the glob automaton needs {cells} transition cells ({states} states x {classes} byte \
         classes; at most {max_cells}) and {matches} match entries (at most {max_matches})"
    )]
    TooLarge {
        /// States.
        states: usize,
        /// Byte classes.
        classes: usize,
        /// States × classes.
        cells: usize,
        /// The table's size.
        max_cells: usize,
        /// Entries of the match lists.
        matches: usize,
        /// The match list's size.
        max_matches: usize,
    },
}

/// One character position: which bytes or UTF-8 sequences it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CharSet {
    /// ASCII bytes accepted.
    ascii: [bool; 128],
    /// Every non-ASCII character (and every byte that starts no valid sequence).
    any_non_ascii: bool,
    /// Specific non-ASCII characters.
    chars: BTreeSet<char>,
}

impl CharSet {
    fn empty() -> Self {
        Self {
            ascii: [false; 128],
            any_non_ascii: false,
            chars: BTreeSet::new(),
        }
    }

    fn literal(c: char) -> Self {
        let mut s = Self::empty();
        s.add(c);
        s
    }

    fn add(&mut self, c: char) {
        match u8::try_from(u32::from(c)) {
            Ok(b) if b < 128 => {
                if let Some(x) = self.ascii.get_mut(usize::from(b)) {
                    *x = true;
                }
            }
            _ => {
                self.chars.insert(c);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(CharSet),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    pattern: &'a str,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> DfaError {
        DfaError::Unsupported {
            pattern: self.pattern.to_owned(),
            reason,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `alt := concat ('|' concat)*`
    fn alt(&mut self) -> Result<Node, DfaError> {
        let mut alts = vec![self.concat()?];
        while self.eat('|') {
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(alts)
        })
    }

    /// `concat := (atom ('*' | '+')?)*`
    fn concat(&mut self) -> Result<Node, DfaError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' || c == '$' {
                break;
            }
            let atom = self.atom()?;
            let atom = if self.eat('*') {
                Node::Star(Box::new(atom))
            } else if self.eat('+') {
                Node::Plus(Box::new(atom))
            } else {
                atom
            };
            if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
                return Err(self.err("stacked or counted repetition"));
            }
            items.push(atom);
        }
        Ok(Node::Concat(items))
    }

    fn atom(&mut self) -> Result<Node, DfaError> {
        match self.next() {
            Some('(') => {
                if !(self.eat('?') && self.eat(':')) {
                    return Err(self.err("capturing or flagged group"));
                }
                let inner = self.alt()?;
                if !self.eat(')') {
                    return Err(self.err("unterminated group"));
                }
                Ok(inner)
            }
            Some('.') => {
                let mut s = CharSet::empty();
                s.ascii = [true; 128];
                if let Some(nl) = s.ascii.get_mut(usize::from(b'\n')) {
                    *nl = false;
                }
                s.any_non_ascii = true;
                Ok(Node::Char(s))
            }
            Some('[') => self.class(),
            Some('\\') => match self.next() {
                Some(c) if !c.is_ascii_alphanumeric() => Ok(Node::Char(CharSet::literal(c))),
                _ => Err(self.err("escape sequence")),
            },
            Some('*' | '+' | '?' | '{' | '^' | '$') => {
                Err(self.err("repetition or anchor in an unexpected place"))
            }
            Some(c) => Ok(Node::Char(CharSet::literal(c))),
            None => Err(self.err("unexpected end")),
        }
    }

    fn class_char(&mut self) -> Result<char, DfaError> {
        match self.next() {
            Some('\\') => match self.next() {
                Some(c) if !c.is_ascii_alphanumeric() => Ok(c),
                _ => Err(self.err("escape sequence in a class")),
            },
            Some('[') => Err(self.err("nested class")),
            Some(c) => Ok(c),
            None => Err(self.err("unterminated class")),
        }
    }

    fn class(&mut self) -> Result<Node, DfaError> {
        let negated = self.eat('^');
        let mut set = CharSet::empty();
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated class")),
                Some(']') if !first => {
                    self.pos += 1;
                    break;
                }
                Some(c)
                    if matches!(c, '&' | '~' | '-') && self.chars.get(self.pos + 1) == Some(&c) =>
                {
                    return Err(self.err("class set operation"));
                }
                _ => {}
            }
            first = false;
            let lo = self.class_char()?;
            if self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']') {
                self.pos += 1;
                let hi = self.class_char()?;
                if hi < lo {
                    return Err(self.err("reversed class range"));
                }
                let (l, h) = (u32::from(lo), u32::from(hi));
                if h >= 128 && h - l.max(128) >= MAX_CLASS_CHARS {
                    return Err(self.err("non-ASCII class range too large"));
                }
                for c in (l..=h).filter_map(char::from_u32) {
                    set.add(c);
                }
                if self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']') {
                    return Err(self.err("range followed by `-`"));
                }
            } else {
                set.add(lo);
            }
        }
        if negated {
            if !set.chars.is_empty() {
                return Err(self.err("negated class with a non-ASCII member"));
            }
            for b in &mut set.ascii {
                *b = !*b;
            }
            set.any_non_ascii = true;
        }
        Ok(Node::Char(set))
    }
}

/// Whether `regex` (one [`armor_core::glob::Glob::regex`]) can be compiled, without building.
pub fn check(regex: &str) -> Result<(), DfaError> {
    parse(regex).map(|_| ())
}

/// Parses one anchored expression (`^…$`) of [`armor_core::glob::Glob::regex`].
fn parse(regex: &str) -> Result<Node, DfaError> {
    let mut p = Parser {
        chars: regex.chars().collect(),
        pos: 0,
        pattern: regex,
    };
    if !p.eat('^') {
        return Err(p.err("expression is not anchored at the start"));
    }
    let node = p.alt()?;
    if !p.eat('$') || p.peek().is_some() {
        return Err(p.err("expression is not anchored at the end"));
    }
    Ok(node)
}

#[derive(Debug, Default, Clone)]
struct NState {
    /// Byte ranges `lo..=hi` to a state.
    edges: Vec<(u8, u8, usize)>,
    eps: Vec<usize>,
    accept: Option<u16>,
}

#[derive(Debug, Default)]
struct Nfa {
    states: Vec<NState>,
}

impl Nfa {
    fn add(&mut self) -> usize {
        self.states.push(NState::default());
        self.states.len() - 1
    }

    fn edge(&mut self, from: usize, lo: u8, hi: u8, to: usize) {
        if let Some(s) = self.states.get_mut(from) {
            s.edges.push((lo, hi, to));
        }
    }

    fn eps(&mut self, from: usize, to: usize) {
        if let Some(s) = self.states.get_mut(from) {
            s.eps.push(to);
        }
    }

    /// Adds `node` from `start`; returns its end state.
    fn build(&mut self, node: &Node, start: usize) -> usize {
        match node {
            Node::Empty => start,
            Node::Char(set) => {
                let end = self.add();
                self.char_set(set, start, end);
                end
            }
            Node::Concat(items) => {
                let mut at = start;
                for (i, n) in items.iter().enumerate() {
                    // One character right before a run (`**` = `[^/].*`): byte-wise as well, so
                    // the run's reading holds from its first byte. Only where it starts on a
                    // character boundary (right after another single character): after a run it
                    // must stay one whole character, or `/*?*` (at least two characters) would
                    // accept the two bytes of `/é`.
                    if let (Node::Char(set), Some(Node::Star(next))) = (n, items.get(i + 1))
                        && i > 0
                        && matches!(items.get(i - 1), Some(Node::Char(_)))
                        && set.any_non_ascii
                        && matches!(next.as_ref(), Node::Char(r) if r.any_non_ascii)
                    {
                        let end = self.add();
                        self.run_bytes(set, at, end);
                        at = end;
                    } else {
                        at = self.build(n, at);
                    }
                }
                at
            }
            Node::Alt(alts) => {
                let end = self.add();
                for a in alts {
                    let s = self.add();
                    self.eps(start, s);
                    let e = self.build(a, s);
                    self.eps(e, end);
                }
                end
            }
            Node::Star(inner) | Node::Plus(inner) => {
                let plus = matches!(node, Node::Plus(_));
                if let Node::Char(set) = inner.as_ref()
                    && set.any_non_ascii
                {
                    // A run, byte-wise: one looping state.
                    let s = self.add();
                    if plus {
                        self.run_bytes(set, start, s);
                    } else {
                        self.eps(start, s);
                    }
                    self.run_bytes(set, s, s);
                    return s;
                }
                let s = self.add();
                self.eps(start, s);
                let e = self.build(inner, s);
                self.eps(e, s);
                if plus { e } else { s }
            }
        }
    }

    /// The ASCII bytes of `set` and every byte `80`–`FF`, from `start` to `end`.
    fn run_bytes(&mut self, set: &CharSet, start: usize, end: usize) {
        self.ascii(set, start, end);
        self.edge(start, 0x80, 0xff, end);
    }

    fn ascii(&mut self, set: &CharSet, start: usize, end: usize) {
        let mut b = 0usize;
        while b < 128 {
            if set.ascii.get(b).copied().unwrap_or(false) {
                let lo = b;
                while set.ascii.get(b + 1).copied().unwrap_or(false) {
                    b += 1;
                }
                self.edge(start, byte(lo), byte(b), end);
            }
            b += 1;
        }
    }

    fn char_set(&mut self, set: &CharSet, start: usize, end: usize) {
        self.ascii(set, start, end);
        if set.any_non_ascii {
            // Continuation bytes of a 2-, 3- and 4-byte sequence.
            let c1 = self.add();
            let c2 = self.add();
            let c3 = self.add();
            self.edge(c1, 0x80, 0xbf, end);
            self.edge(c2, 0x80, 0xbf, c1);
            self.edge(c3, 0x80, 0xbf, c2);
            self.edge(start, 0xc2, 0xdf, c1);
            self.edge(start, 0xe0, 0xef, c2);
            self.edge(start, 0xf0, 0xf4, c3);
            // Bytes that occur in no valid UTF-8: one character each.
            self.edge(start, 0xc0, 0xc1, end);
            self.edge(start, 0xf5, 0xff, end);
        }
        for c in &set.chars {
            let mut buf = [0u8; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            let mut at = start;
            for (i, &x) in bytes.iter().enumerate() {
                let to = if i + 1 == bytes.len() {
                    end
                } else {
                    self.add()
                };
                self.edge(at, x, x, to);
                at = to;
            }
        }
    }

    fn closure(&self, set: &mut BTreeSet<usize>) {
        let mut stack: Vec<usize> = set.iter().copied().collect();
        while let Some(s) = stack.pop() {
            for &t in self.states.get(s).map_or(&[][..], |x| &x.eps[..]) {
                if set.insert(t) {
                    stack.push(t);
                }
            }
        }
    }
}

fn byte(x: usize) -> u8 {
    u8::try_from(x).unwrap_or(u8::MAX)
}

/// A compiled glob group: states `0` (dead) and `1` (start) and up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Dfa {
    /// The byte class of every byte.
    pub classes: [u8; 256],
    /// Number of byte classes.
    pub nclasses: usize,
    /// `next[state * nclasses + class]`.
    pub next: Vec<u16>,
    /// Per state: the globs (indices into the group) that match when the input ends there.
    pub accept: Vec<Vec<u16>>,
}

impl Dfa {
    /// Builds the automaton of `regexes` (anchored expressions of
    /// [`armor_core::glob::Glob::regex`]; glob `i` is reported as `i`), with at most
    /// `max_states` states (the dead state included).
    pub fn build(regexes: &[&str], max_states: usize) -> Result<Self, DfaError> {
        let mut nfa = Nfa::default();
        let start = nfa.add();
        for (i, r) in regexes.iter().enumerate() {
            let node = parse(r)?;
            let s = nfa.add();
            nfa.eps(start, s);
            let end = nfa.build(&node, s);
            let acc = nfa.add();
            nfa.eps(end, acc);
            if let Some(a) = nfa.states.get_mut(acc) {
                a.accept = u16::try_from(i).ok();
            }
        }
        // Byte intervals: every edge boundary starts a new one.
        let mut cut = [false; 257];
        cut[0] = true;
        cut[256] = true;
        for s in &nfa.states {
            for &(lo, hi, _) in &s.edges {
                if let Some(c) = cut.get_mut(usize::from(lo)) {
                    *c = true;
                }
                if let Some(c) = cut.get_mut(usize::from(hi) + 1) {
                    *c = true;
                }
            }
        }
        let reps: Vec<u8> = (0..256usize)
            .filter(|&b| cut.get(b).copied().unwrap_or(false))
            .map(byte)
            .collect();
        let raw = subsets(&nfa, start, &reps, max_states.saturating_mul(RAW_FACTOR))
            .map_err(|_| DfaError::TooManyStates { limit: max_states })?;
        let raw = minimise(raw, reps.len());
        let dfa = finish(&raw, &reps);
        if dfa.states() > max_states {
            return Err(DfaError::TooManyStates { limit: max_states });
        }
        Ok(dfa)
    }

    /// Number of states, the dead state included.
    pub fn states(&self) -> usize {
        self.accept.len()
    }

    /// The state after `bytes` from `state`.
    pub fn step(&self, mut state: usize, bytes: &[u8]) -> usize {
        for &b in bytes {
            if state == 0 {
                break;
            }
            let class = usize::from(self.classes.get(usize::from(b)).copied().unwrap_or(0));
            state = self
                .next
                .get(state * self.nclasses + class)
                .map_or(0, |&n| usize::from(n));
        }
        state
    }

    /// The globs matching the whole of `path`.
    pub fn matches(&self, path: &[u8]) -> &[u16] {
        let s = self.step(1, path);
        self.accept.get(s).map_or(&[][..], |a| &a[..])
    }
}

/// A DFA before minimisation: transitions per byte interval.
struct Raw {
    next: Vec<Vec<usize>>,
    accept: Vec<Vec<u16>>,
}

fn subsets(nfa: &Nfa, start: usize, reps: &[u8], max_states: usize) -> Result<Raw, DfaError> {
    let too_many = DfaError::TooManyStates { limit: max_states };
    let mut ids: HashMap<BTreeSet<usize>, usize> = HashMap::new();
    let mut sets: Vec<BTreeSet<usize>> = Vec::new();
    // The dead state is the empty set.
    ids.insert(BTreeSet::new(), 0);
    sets.push(BTreeSet::new());
    let mut first = BTreeSet::from([start]);
    nfa.closure(&mut first);
    ids.insert(first.clone(), 1);
    sets.push(first);
    if max_states < 2 {
        return Err(too_many);
    }
    let mut next: Vec<Vec<usize>> = vec![vec![0; reps.len()]];
    let mut i = 1;
    while let Some(set) = sets.get(i).cloned() {
        let mut row = Vec::with_capacity(reps.len());
        for &b in reps {
            let mut to = BTreeSet::new();
            for &s in &set {
                for &(lo, hi, t) in nfa.states.get(s).map_or(&[][..], |x| &x.edges[..]) {
                    if lo <= b && b <= hi {
                        to.insert(t);
                    }
                }
            }
            nfa.closure(&mut to);
            let id = match ids.get(&to) {
                Some(&id) => id,
                None => {
                    let id = sets.len();
                    if id >= max_states {
                        return Err(too_many);
                    }
                    ids.insert(to.clone(), id);
                    sets.push(to);
                    id
                }
            };
            row.push(id);
        }
        next.push(row);
        i += 1;
    }
    let accept = sets
        .iter()
        .map(|set| {
            let mut a: Vec<u16> = set
                .iter()
                .filter_map(|&s| nfa.states.get(s).and_then(|x| x.accept))
                .collect();
            a.sort_unstable();
            a.dedup();
            a
        })
        .collect();
    Ok(Raw { next, accept })
}

/// Moore's partition refinement: states with the same matches and the same successors' blocks
/// merge. The dead state stays state 0, the start state's block becomes state 1 in `finish`.
fn minimise(raw: Raw, width: usize) -> Raw {
    let n = raw.accept.len();
    let mut block: Vec<usize> = {
        let mut first: BTreeMap<&Vec<u16>, usize> = BTreeMap::new();
        raw.accept
            .iter()
            .map(|a| {
                let k = first.len();
                *first.entry(a).or_insert(k)
            })
            .collect()
    };
    loop {
        let mut sig: BTreeMap<(usize, Vec<usize>), usize> = BTreeMap::new();
        let mut refined = Vec::with_capacity(n);
        for s in 0..n {
            let succ: Vec<usize> = raw
                .next
                .get(s)
                .map(|row| {
                    row.iter()
                        .map(|&t| block.get(t).copied().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_else(|| vec![0; width]);
            let key = (block.get(s).copied().unwrap_or(0), succ);
            let k = sig.len();
            refined.push(*sig.entry(key).or_insert(k));
        }
        let stable = sig.len() == block.iter().collect::<BTreeSet<_>>().len();
        block = refined;
        if stable {
            break;
        }
    }
    let blocks = block.iter().collect::<BTreeSet<_>>().len();
    let mut next = vec![Vec::new(); blocks];
    let mut accept = vec![Vec::new(); blocks];
    for s in 0..n {
        let b = block.get(s).copied().unwrap_or(0);
        if let (Some(row), Some(src)) = (next.get_mut(b), raw.next.get(s)) {
            *row = src
                .iter()
                .map(|&t| block.get(t).copied().unwrap_or(0))
                .collect();
        }
        if let (Some(a), Some(src)) = (accept.get_mut(b), raw.accept.get(s)) {
            a.clone_from(src);
        }
    }
    // Put the dead state's block first and the start state's second.
    let dead = block.first().copied().unwrap_or(0);
    let start = block.get(1).copied().unwrap_or(0);
    let mut order: Vec<usize> = vec![dead];
    if start != dead {
        order.push(start);
    }
    order.extend((0..blocks).filter(|&b| b != dead && b != start));
    let mut pos = vec![0; blocks];
    for (i, &b) in order.iter().enumerate() {
        if let Some(p) = pos.get_mut(b) {
            *p = i;
        }
    }
    let mut out = Raw {
        next: Vec::with_capacity(blocks),
        accept: Vec::with_capacity(blocks),
    };
    for &b in &order {
        out.next.push(
            next.get(b)
                .map(|row| {
                    row.iter()
                        .map(|&t| pos.get(t).copied().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default(),
        );
        out.accept.push(accept.get(b).cloned().unwrap_or_default());
    }
    out
}

/// Byte classes from equal columns, states in breadth-first order from the start.
fn finish(raw: &Raw, reps: &[u8]) -> Dfa {
    // Renumber: 0 dead, 1 start, then breadth-first over intervals in byte order.
    let n = raw.accept.len();
    let mut new_id = vec![usize::MAX; n];
    let mut order = Vec::with_capacity(n);
    if let Some(d) = new_id.get_mut(0) {
        *d = 0;
        order.push(0);
    }
    let mut queue = VecDeque::new();
    if n > 1 {
        if let Some(s) = new_id.get_mut(1) {
            *s = 1;
        }
        order.push(1);
        queue.push_back(1);
    }
    while let Some(s) = queue.pop_front() {
        for &t in raw.next.get(s).map_or(&[][..], |r| &r[..]) {
            if let Some(id) = new_id.get_mut(t)
                && *id == usize::MAX
            {
                *id = order.len();
                order.push(t);
                queue.push_back(t);
            }
        }
    }
    let col = |i: usize| -> Vec<usize> {
        order
            .iter()
            .map(|&s| {
                let t = raw.next.get(s).and_then(|r| r.get(i)).copied().unwrap_or(0);
                new_id.get(t).copied().unwrap_or(0)
            })
            .collect()
    };
    // Interval i covers bytes reps[i]..reps[i+1].
    let mut class_of_col: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    let mut interval_class = Vec::with_capacity(reps.len());
    let mut first_interval = Vec::new();
    for i in 0..reps.len() {
        let k = class_of_col.len();
        let c = *class_of_col.entry(col(i)).or_insert(k);
        if c == first_interval.len() {
            first_interval.push(i);
        }
        interval_class.push(c);
    }
    let mut classes = [0u8; 256];
    for (i, &lo) in reps.iter().enumerate() {
        let hi = reps.get(i + 1).map_or(256, |&h| usize::from(h));
        let c = byte(interval_class.get(i).copied().unwrap_or(0));
        for slot in classes.iter_mut().take(hi).skip(usize::from(lo)) {
            *slot = c;
        }
    }
    let nclasses = first_interval.len().max(1);
    let mut next = Vec::with_capacity(order.len() * nclasses);
    let mut accept = Vec::with_capacity(order.len());
    for &s in &order {
        for &iv in &first_interval {
            let t = raw
                .next
                .get(s)
                .and_then(|r| r.get(iv))
                .copied()
                .unwrap_or(0);
            let id = new_id.get(t).copied().unwrap_or(0);
            next.push(u16::try_from(id).unwrap_or(0));
        }
        if first_interval.is_empty() {
            next.push(0);
        }
        accept.push(raw.accept.get(s).cloned().unwrap_or_default());
    }
    Dfa {
        classes,
        nclasses,
        next,
        accept,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use armor_core::glob::Glob;

    fn dfa(globs: &[&str]) -> Dfa {
        let gs: Vec<Glob> = globs.iter().map(|g| Glob::new(g).unwrap()).collect();
        let rs: Vec<&str> = gs.iter().map(Glob::regex).collect();
        Dfa::build(&rs, 4096).unwrap()
    }

    #[test]
    fn globs_match_like_the_engine_examples() {
        let d = dfa(&[
            "/etc/*.conf",
            "/etc/**",
            "/bin/{ba,da,}sh",
            "/tmp/?",
            "/tmp/[^a-c]x",
        ]);
        assert_eq!(d.matches(b"/etc/a.conf"), &[0, 1]);
        assert_eq!(d.matches(b"/etc/x/a.conf"), &[1]);
        assert_eq!(d.matches(b"/etc/"), &[] as &[u16]);
        assert_eq!(d.matches(b"/bin/sh"), &[2]);
        assert_eq!(d.matches(b"/bin/zsh"), &[] as &[u16]);
        assert_eq!(d.matches("/tmp/é".as_bytes()), &[3]);
        assert_eq!(d.matches(b"/tmp//"), &[] as &[u16]);
        assert_eq!(d.matches(b"/tmp/dx"), &[4]);
        assert_eq!(d.matches(b"/tmp/bx"), &[] as &[u16]);
        // `[^a-c]` takes `/` as the engine's regex does.
        assert_eq!(d.matches(b"/tmp//x"), &[4]);
    }

    #[test]
    fn invalid_utf8_names_still_match_runs() {
        let d = dfa(&["/tmp/*", "/tmp/?", "/tmp/**"]);
        assert_eq!(d.matches(b"/tmp/\xff"), &[0, 1, 2]);
        assert_eq!(d.matches(b"/tmp/a\x80b"), &[0, 2]);
        // A truncated sequence: runs take it, a single character does not.
        assert_eq!(d.matches(b"/tmp/\xc3"), &[0, 2]);
        assert_eq!(d.matches(b"/tmp/\xc3/x"), &[2]);
    }

    #[test]
    fn a_single_character_after_a_run_is_a_whole_character() {
        // Found by the random test: `*` at a component start is one or more characters, so
        // these need two characters and `é` is one (two bytes).
        let d = dfa(&["/*?*", "/**?*", "/*?", "/?*"]);
        assert_eq!(d.matches("/é".as_bytes()), &[3]);
        assert_eq!(d.matches("/éa".as_bytes()), &[0, 1, 2, 3]);
        assert_eq!(d.matches("/éé".as_bytes()), &[0, 1, 2, 3]);
        assert_eq!(d.matches(b"/ab"), &[0, 1, 2, 3]);
        assert_eq!(d.matches(b"/a"), &[3]);
        // `**` right after `/` still takes a name that starts with a stray continuation byte.
        assert_eq!(dfa(&["/t/**"]).matches(b"/t/\x80x"), &[0]);
    }

    #[test]
    fn minimal_and_deterministic() {
        let a = dfa(&["/etc/*.conf", "/etc/**"]);
        let b = dfa(&["/etc/*.conf", "/etc/**"]);
        assert_eq!(a, b);
        // `/a`, `/a/b` and `/a/b/c` share nothing but the start: a literal path is a chain.
        let lit = dfa(&["/abc"]);
        assert_eq!(lit.states(), 6, "dead, start, and one per byte: {lit:?}");
        assert!(lit.nclasses <= 5);
    }

    #[test]
    fn state_cap_is_enforced() {
        let g = Glob::new("/**/a?????????????").unwrap();
        assert_eq!(
            Dfa::build(&[g.regex()], 64),
            Err(DfaError::TooManyStates { limit: 64 })
        );
    }

    #[test]
    fn unsupported_syntax_is_reported() {
        let g = Glob::new("/tmp/[^é]").unwrap();
        assert!(matches!(
            Dfa::build(&[g.regex()], 64),
            Err(DfaError::Unsupported { .. })
        ));
        let g = Glob::new("/tmp/[é-ë]").unwrap();
        let d = Dfa::build(&[g.regex()], 64).unwrap();
        assert_eq!(d.matches("/tmp/ê".as_bytes()), &[0]);
        assert_eq!(d.matches("/tmp/e".as_bytes()), &[] as &[u16]);
    }
}
