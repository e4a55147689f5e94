#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The YAML writer: every string, as a value and as a key, reads back as itself.

#[test]
fn tricky_strings_read_back_as_themselves() {
    let strings = [
        "",
        "plain",
        "/etc/shadow",
        ".5",
        ".0",
        ".5e3",
        "1",
        "1.5",
        "1e3",
        "0x1F",
        "0o7",
        "-1",
        "true",
        "True",
        "yes",
        "no",
        "on",
        "Off",
        "y",
        "N",
        "null",
        "~",
        "...",
        "---",
        "-x",
        "- x",
        "?x",
        ":x",
        "a: b",
        "a #b",
        "#c",
        "@x",
        "`x",
        "!x",
        "&x",
        "*x",
        "|x",
        ">x",
        "%x",
        "{x}",
        "[x]",
        "x,y",
        "'q'",
        "\"q\"",
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "del\u{7f}",
        "c1\u{85}",
        "sep\u{2028}",
        "é",
        "emoji 😀",
        " lead",
        "trail ",
        ".spec.action",
        "^\\/+.*[^\\/]$",
    ];
    for s in strings {
        let value = serde_json::json!({ "value": s, s: [s], "n": { s: s } });
        let text = armor_k8s::yaml::to_string(&value);
        let back = armor_core::crd::documents(&text, "t.yaml")
            .unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
        assert_eq!(back, vec![value.clone()], "{s:?} as written:\n{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{s:?}: a raw control character in\n{text}"
        );
    }
}
