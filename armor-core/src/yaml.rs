//! A small YAML document tree whose every node knows where it came from.
//!
//! Policies are untrusted input (they arrive through a CRD), so loading is bounded: the text size,
//! the nesting depth and the number of nodes *after alias expansion* are limited by
//! [`LoadLimits`]. Aliases are shared, never copied, so an alias bomb costs memory proportional
//! to its text, and the node budget stops the walk over it.

use std::rc::Rc;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diag::Location;

/// Bounds on what one YAML input may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadLimits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes visited in one input, counting every expansion of an alias.
    pub max_nodes: usize,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_depth: 64,
            max_nodes: 4_000_000,
        }
    }
}

/// A 1-based position inside one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }

    pub(crate) fn location(self, file: &Arc<str>) -> Location {
        Location::new(file.clone(), self.line, self.column)
    }
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
}

/// A node of the tree.
#[derive(Debug)]
pub(crate) enum NodeKind {
    Scalar { value: String, style: Style },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A node and where it starts. Children are shared (`Rc`) so aliases cost nothing to build.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Rc<NodeKind>,
    pub(crate) pos: Pos,
}

/// What a plain scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarType {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl Node {
    /// The type of the node for messages ("a string", "a mapping", …).
    pub(crate) fn describe(&self) -> &'static str {
        match &*self.kind {
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Scalar { value, style } => match scalar_type(value, *style) {
                ScalarType::Null => "null",
                ScalarType::Bool => "a boolean",
                ScalarType::Int => "an integer",
                ScalarType::Float => "a number",
                ScalarType::Str => "a string",
            },
        }
    }
}

/// Resolves a scalar's type the way Kubernetes' YAML decoder does for the values we read.
pub(crate) fn scalar_type(value: &str, style: Style) -> ScalarType {
    if style == Style::Quoted {
        return ScalarType::Str;
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarType::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return ScalarType::Bool,
        _ => {}
    }
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return ScalarType::Int;
    }
    if let Some(hex) = value.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return ScalarType::Int;
    }
    if let Some(oct) = value.strip_prefix("0o")
        && !oct.is_empty()
        && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return ScalarType::Int;
    }
    let lower = value.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | "-.inf" | "+.inf" | ".nan") {
        return ScalarType::Float;
    }
    let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && value.parse::<f64>().is_ok();
    if looks_float {
        return ScalarType::Float;
    }
    ScalarType::Str
}

/// One YAML document of an input.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) root: Node,
}

/// Why an input could not be turned into documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

struct Builder<'l> {
    limits: &'l LoadLimits,
    /// Anchored nodes by anchor id.
    anchors: Vec<Option<Node>>,
    /// Nodes visited so far, aliases counted with their full size.
    visited: usize,
}

/// Splits `text` into documents. Stops at the first syntax error (YAML cannot be resynchronised
/// reliably after one), which is reported with its position.
pub(crate) fn load(text: &str, limits: &LoadLimits) -> Result<Vec<Document>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: format!(
                "input is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_bytes
            ),
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        limits,
        anchors: Vec::new(),
        visited: 0,
    };
    let mut docs = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(scan_error)?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                let (ev, sp) = next_event(&mut parser)?;
                if matches!(ev, Event::DocumentEnd) {
                    continue;
                }
                let root = b.node(&mut parser, ev, sp, 0)?;
                let (end, _) = next_event(&mut parser)?;
                if !matches!(end, Event::DocumentEnd) {
                    return Err(YamlError {
                        pos: Pos::from_span(&span),
                        message: "expected the end of the document".into(),
                    });
                }
                // Anchors are scoped to their document.
                b.anchors.clear();
                let empty = matches!(&*root.kind, NodeKind::Scalar { value, style }
                    if scalar_type(value, *style) == ScalarType::Null);
                if !empty {
                    docs.push(Document { root });
                }
            }
            _ => {}
        }
    }
    Ok(docs)
}

fn scan_error(e: saphyr_parser::ScanError) -> YamlError {
    let m = e.marker();
    YamlError {
        pos: Pos {
            line: m.line(),
            column: m.col() + 1,
        },
        message: format!("invalid YAML: {}", e.info()),
    }
}

fn next_event<'a>(
    parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
) -> Result<(Event<'a>, Span), YamlError> {
    match parser.next_event() {
        Some(r) => r.map_err(scan_error),
        None => Err(YamlError {
            pos: Pos::default(),
            message: "unexpected end of input".into(),
        }),
    }
}

impl Builder<'_> {
    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.visited = self.visited.saturating_add(n);
        if self.visited > self.limits.max_nodes {
            return Err(YamlError {
                pos,
                message: format!(
                    "more than {} nodes (counting alias expansions): input rejected",
                    self.limits.max_nodes
                ),
            });
        }
        Ok(())
    }

    fn anchor(&mut self, id: usize, node: &Node) {
        if id == 0 {
            return;
        }
        if self.anchors.len() <= id {
            self.anchors.resize(id + 1, None);
        }
        if let Some(slot) = self.anchors.get_mut(id) {
            *slot = Some(node.clone());
        }
    }

    fn node<'a>(
        &mut self,
        parser: &mut Parser<'a, saphyr_parser::StrInput<'a>>,
        event: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<Node, YamlError> {
        let pos = Pos::from_span(&span);
        if depth > self.limits.max_depth {
            return Err(YamlError {
                pos,
                message: format!("nesting deeper than {} levels", self.limits.max_depth),
            });
        }
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                self.count(1, pos)?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    _ => Style::Quoted,
                };
                let node = Node {
                    kind: Rc::new(NodeKind::Scalar {
                        value: value.into_owned(),
                        style,
                    }),
                    pos,
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => {
                let Some(Some(target)) = self.anchors.get(id).cloned() else {
                    return Err(YamlError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                let size = subtree_size(&target, self.limits.max_nodes);
                self.count(size, pos)?;
                Ok(Node {
                    kind: target.kind,
                    pos,
                })
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, pos)?;
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = next_event(parser)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(parser, ev, sp, depth + 1)?);
                }
                let node = Node {
                    kind: Rc::new(NodeKind::Seq(items)),
                    pos,
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, pos)?;
                let mut entries = Vec::new();
                loop {
                    let (ev, sp) = next_event(parser)?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(parser, ev, sp, depth + 1)?;
                    let (ev, sp) = next_event(parser)?;
                    let value = self.node(parser, ev, sp, depth + 1)?;
                    entries.push((key, value));
                }
                let node = Node {
                    kind: Rc::new(NodeKind::Map(entries)),
                    pos,
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            _ => Err(YamlError {
                pos,
                message: "unexpected YAML event".into(),
            }),
        }
    }
}

/// Size of a (shared) subtree, stopping once it exceeds `cap` so a bomb is measured cheaply.
fn subtree_size(node: &Node, cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Node> = vec![node];
    while let Some(n) = stack.pop() {
        total += 1;
        if total > cap {
            return total;
        }
        match &*n.kind {
            NodeKind::Scalar { .. } => {}
            NodeKind::Seq(items) => stack.extend(items.iter()),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    stack.push(k);
                    stack.push(v);
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let docs = load("a:\n  b: [1, x]\n", &LoadLimits::default()).unwrap();
        let NodeKind::Map(m) = &*docs[0].root.kind else {
            panic!()
        };
        let (k, v) = &m[0];
        assert_eq!(k.pos, Pos { line: 1, column: 1 });
        let NodeKind::Map(inner) = &*v.kind else {
            panic!()
        };
        let NodeKind::Seq(items) = &*inner[0].1.kind else {
            panic!()
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 2,
                column: 10
            }
        );
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let docs = load("a: 1\n---\n---\nb: 2\n", &LoadLimits::default()).unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let start = std::time::Instant::now();
        let err = load(&text, &LoadLimits::default()).unwrap_err();
        assert!(err.message.contains("nodes"), "{}", err.message);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = "[".repeat(200) + &"]".repeat(200);
        let err = load(&text, &LoadLimits::default()).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
    }

    #[test]
    fn scalar_types() {
        assert_eq!(scalar_type("12", Style::Plain), ScalarType::Int);
        assert_eq!(scalar_type("12", Style::Quoted), ScalarType::Str);
        assert_eq!(scalar_type("true", Style::Plain), ScalarType::Bool);
        assert_eq!(scalar_type("", Style::Plain), ScalarType::Null);
        assert_eq!(scalar_type("1.5", Style::Plain), ScalarType::Float);
        assert_eq!(scalar_type("/bin/sh", Style::Plain), ScalarType::Str);
        assert_eq!(scalar_type("e", Style::Plain), ScalarType::Str);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = load("a: [1, 2\nb: 3\n", &LoadLimits::default()).unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(err.message.starts_with("invalid YAML"));
    }
}
