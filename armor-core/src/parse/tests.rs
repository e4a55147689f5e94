//! Parser tests: every CRD check, with its position and field.

use super::*;

#[test]
fn constant_regexes_compile() {
    assert!(PATH_RE.is_match("/etc/passwd"));
    assert!(!PATH_RE.is_match("/etc/"));
    assert!(!PATH_RE.is_match("etc/passwd"));
    assert!(DIR_RE.is_match("/"));
    assert!(DIR_RE.is_match("/etc/"));
    assert!(!DIR_RE.is_match("/etc"));
    assert!(EXECNAME_RE.is_match("sleep"));
    assert!(!EXECNAME_RE.is_match("bin/sleep"));
    assert!(NAME_RE.is_match("block-shadow.v1"));
    assert!(!NAME_RE.is_match("Block"));
    assert!(NAMESPACE_RE.is_match("kube-system"));
}
