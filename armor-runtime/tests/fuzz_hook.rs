//! Fuzzing the OCI hook's request parser ([`armor_testing::fuzz`]): whatever a client sends on
//! the hook socket, [`HookState::parse`] answers with a state or an error, never a panic.
//! Corpus: `testdata/fuzz/hook/`.

use armor_runtime::hook::HookState;

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"\"id\":",
    b"\"pid\":",
    b"\"bundle\":",
    b"\"annotations\":",
    b"\"armorTimeoutMs\":",
    b"\"root\":",
    b"-1",
    b"0",
    b"4294967296",
    b"1e999",
    b"null",
    b"[]",
    b"\"\\u0000\"",
    b"\"/../..\"",
    b",",
    b":",
];

#[test]
fn fuzz_hook_request_never_panics() {
    armor_testing::fuzz::run("hook", &[], TOKENS, |bytes| {
        if let Ok(state) = HookState::parse(bytes) {
            let _ = state.containerd_namespace();
            let _ = state.rootfs();
        }
    });
}
