//! A small YAML writer for JSON values, for files people read and `kubectl apply` takes: block
//! mappings and sequences, keys in the value's order (serde_json's: sorted), strings plain where YAML reads them back
//! as the same string (a letter, `_` or `/` first, then letters, digits, `_-./`; no boolean or
//! null word) and double-quoted, with everything but printable ASCII escaped, everywhere else.
//!
//! ```
//! let v = serde_json::json!({"kind": "X", "spec": {"names": ["a", "true"], "count": 1, "e": {}}});
//! assert_eq!(
//!     armor_k8s::yaml::to_string(&v),
//!     "kind: X\nspec:\n  count: 1\n  e: {}\n  names:\n  - a\n  - \"true\"\n"
//! );
//! ```

use serde_json::Value;

/// `value` as a YAML document (ending with a newline).
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A block mapping at column `at`; the first line's indentation is already written when
/// `first_inline` (an item of a sequence).
fn mapping_lines(
    m: &serde_json::Map<String, Value>,
    at: usize,
    first_inline: bool,
    out: &mut String,
) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(at, out);
        }
        out.push_str(&string(k));
        out.push(':');
        value_after_key(v, at, out);
    }
}

fn mapping(m: &serde_json::Map<String, Value>, at: usize, out: &mut String) {
    mapping_lines(m, at, false, out);
}

/// What follows `key:`: a scalar or empty collection on the same line, else a nested block.
fn value_after_key(v: &Value, at: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            mapping(m, at + 2, out);
        }
        // Sequences under a key are written at the key's column (the common Kubernetes style).
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            sequence(a, at, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn sequence(a: &[Value], at: usize, out: &mut String) {
    for v in a {
        indent(at, out);
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => mapping_lines(m, at + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(inner, at + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// `s` plain when YAML (1.1 or 1.2) reads it back as this string, else double-quoted.
fn string(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return s.to_string();
    }
    // Printable ASCII as it is, everything else escaped: what YAML's double-quoted style reads
    // back as the same string (no raw control, C1, line or paragraph separator characters).
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}
