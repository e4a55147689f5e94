//! AppArmor-style globs for `matchPatterns`, translated to anchored regular expressions.
//!
//! | glob | matches |
//! |---|---|
//! | `*` | any run of characters other than `/` (at least one right after a `/`) |
//! | `**` | any run of characters including `/` (at least one, not starting with `/`, right after a `/`) |
//! | `?` | one character other than `/` |
//! | `[abc]`, `[a-z]`, `[^abc]` | one character of (not of) the class |
//! | `{a,b,c}` | one of the alternatives (alternatives may nest and may be empty) |
//! | `\x` | the character `x` itself |
//!
//! AppArmor variables (`@{HOME}`) are not expanded and are rejected, because the engine could
//! not decide them the way AppArmor would.

use std::fmt;

/// A glob that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {reason}")]
#[non_exhaustive]
pub struct GlobError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed AppArmor glob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    pattern: String,
    regex: String,
}

impl Glob {
    /// Parses `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let err = |reason: &str| GlobError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if !pattern.starts_with('/') {
            return Err(err("must be an absolute path pattern (start with \"/\")"));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut out = String::with_capacity(pattern.len() * 2 + 4);
        out.push('^');
        let mut i = 0usize;
        let mut braces = 0usize;
        // Whether the last thing emitted was a literal `/`.
        let mut after_slash = false;
        while let Some(&c) = chars.get(i) {
            let mut next_after_slash = false;
            match c {
                '*' => {
                    let double = chars.get(i + 1) == Some(&'*');
                    if double {
                        while chars.get(i + 1) == Some(&'*') {
                            i += 1;
                        }
                        out.push_str(if after_slash { "[^/].*" } else { ".*" });
                    } else {
                        out.push_str(if after_slash { "[^/]+" } else { "[^/]*" });
                    }
                }
                '?' => out.push_str("[^/]"),
                '[' => {
                    let mut j = i + 1;
                    let mut class = String::from("[");
                    if matches!(chars.get(j), Some('^') | Some('!')) {
                        class.push('^');
                        j += 1;
                    }
                    let start = j;
                    loop {
                        match chars.get(j) {
                            None => return Err(err("unterminated `[`")),
                            Some(']') if j > start => break,
                            Some('\\') => {
                                let Some(&e) = chars.get(j + 1) else {
                                    return Err(err("pattern ends with `\\`"));
                                };
                                push_class_char(&mut class, e);
                                j += 2;
                            }
                            Some(&ch) => {
                                if ch == '-' && j > start && chars.get(j + 1) != Some(&']') {
                                    class.push('-');
                                } else {
                                    push_class_char(&mut class, ch);
                                }
                                j += 1;
                            }
                        }
                    }
                    class.push(']');
                    out.push_str(&class);
                    i = j;
                }
                '{' => {
                    braces += 1;
                    out.push_str("(?:");
                    next_after_slash = after_slash;
                }
                ',' if braces > 0 => {
                    out.push('|');
                    next_after_slash = brace_start_after_slash(&chars, i);
                }
                '}' if braces > 0 => {
                    braces -= 1;
                    out.push(')');
                }
                '\\' => {
                    let Some(&e) = chars.get(i + 1) else {
                        return Err(err("pattern ends with `\\`"));
                    };
                    push_literal(&mut out, e);
                    next_after_slash = e == '/';
                    i += 1;
                }
                '@' if chars.get(i + 1) == Some(&'{') => {
                    return Err(err("AppArmor variables (`@{...}`) are not supported"));
                }
                '\0' => return Err(err("contains a NUL character")),
                _ => {
                    push_literal(&mut out, c);
                    next_after_slash = c == '/';
                }
            }
            after_slash = next_after_slash;
            i += 1;
        }
        if braces > 0 {
            return Err(err("unterminated `{`"));
        }
        out.push('$');
        Ok(Self {
            pattern: pattern.to_string(),
            regex: out,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The equivalent anchored regular expression (`regex` crate syntax).
    pub fn regex(&self) -> &str {
        &self.regex
    }

    /// The literal text before the first glob character: every match starts with it.
    pub fn literal_prefix(&self) -> &str {
        let end = self
            .pattern
            .find(['*', '?', '[', '{', '\\'])
            .unwrap_or(self.pattern.len());
        self.pattern.get(..end).unwrap_or("")
    }
}

/// Whether the alternative that starts after the `,` at `comma` begins right after a `/`
/// (that is, whether the brace group itself follows a `/`).
fn brace_start_after_slash(chars: &[char], comma: usize) -> bool {
    let mut depth = 0usize;
    let mut k = comma;
    while k > 0 {
        k -= 1;
        match chars.get(k) {
            Some('}') => depth += 1,
            Some('{') if depth == 0 => {
                return k > 0 && chars.get(k - 1) == Some(&'/');
            }
            Some('{') => depth -= 1,
            _ => {}
        }
    }
    false
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

/// The characters `regex` gives a meaning (what `regex::escape` escapes), without allocating.
fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

fn push_class_char(out: &mut String, c: char) {
    if matches!(c, '\\' | ']' | '[' | '^' | '-' | '&' | '~') {
        out.push('\\');
    }
    out.push(c);
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, path: &str) -> bool {
        let g = Glob::new(glob).unwrap();
        regex::Regex::new(g.regex()).unwrap().is_match(path)
    }

    #[test]
    fn star_stays_in_component() {
        assert!(m("/etc/*.conf", "/etc/a.conf"));
        assert!(!m("/etc/*.conf", "/etc/x/a.conf"));
        assert!(m("/etc/*", "/etc/passwd"));
        assert!(!m("/etc/*", "/etc/"));
        assert!(m("/etc/a*", "/etc/a"));
    }

    #[test]
    fn double_star_crosses() {
        assert!(m("/etc/**", "/etc/a/b/c"));
        assert!(!m("/etc/**", "/etc/"));
        assert!(m("/home/**/.ssh/*", "/home/u/.ssh/id_rsa"));
        assert!(m("/**/passwd", "/etc/passwd"));
    }

    #[test]
    fn classes_alternatives_question() {
        assert!(m("/tmp/[a-c]x", "/tmp/bx"));
        assert!(!m("/tmp/[a-c]x", "/tmp/dx"));
        assert!(m("/tmp/[^a-c]x", "/tmp/dx"));
        assert!(m("/bin/{ba,da,}sh", "/bin/sh"));
        assert!(m("/bin/{ba,da,}sh", "/bin/dash"));
        assert!(!m("/bin/{ba,da,}sh", "/bin/zsh"));
        assert!(m("/etc/{,**}", "/etc/"));
        assert!(m("/etc/{,**}", "/etc/a/b"));
        assert!(m("/tmp/?", "/tmp/a"));
        assert!(!m("/tmp/?", "/tmp//"));
        assert!(m("/a.b", "/a.b"));
        assert!(!m("/a.b", "/axb"));
    }

    #[test]
    fn literal_escaping_agrees_with_regex_escape() {
        for c in (0u8..128).map(char::from).chain(['é', '☃']) {
            let mut ours = String::new();
            push_literal(&mut ours, c);
            let mut buf = [0u8; 4];
            assert_eq!(ours, regex::escape(c.encode_utf8(&mut buf)), "{c:?}");
        }
    }

    #[test]
    fn errors() {
        assert!(Glob::new("etc/*").is_err());
        assert!(Glob::new("/etc/[a").is_err());
        assert!(Glob::new("/etc/{a,b").is_err());
        assert!(Glob::new("/home/@{USER}/x").is_err());
        assert_eq!(
            Glob::new("/etc/ssl/*.pem").unwrap().literal_prefix(),
            "/etc/ssl/"
        );
    }
}
