//! Fuzzing the policy loader ([`armor_testing::fuzz`]): whatever bytes a policy file holds, the
//! loader and the compiler answer with a policy set or located errors, never a panic or a hang.
//! Corpus: `testdata/fuzz/loader/` (the example policies, the all-fields policies, an invalid
//! one).

use armor_core::{CompiledPolicy, PolicySet};

const TOKENS: &[&[u8]] = &[
    b"apiVersion: security.kubearmor.com/v1\n",
    b"kind: KubeArmorPolicy\n",
    b"kind: KubeArmorHostPolicy\n",
    b"kind: KubeArmorClusterPolicy\n",
    b"---\n",
    b"\n  ",
    b": ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"&a ",
    b"*a",
    b"'",
    b"\"",
    b"matchPaths:\n",
    b"- path: /",
    b"matchDirectories:\n",
    b"dir: /a/\n",
    b"recursive: true\n",
    b"matchPatterns:\n",
    b"- pattern: /**/*.[a-z]?\n",
    b"fromSource:\n",
    b"action: Block\n",
    b"action: Allow\n",
    b"selector:\n",
    b"matchLabels:\n",
    b"matchExpressions:\n",
    b"protocol: tcp\n",
    b"capability: net_raw\n",
    b"syscall: [mount]\n",
    b"severity: 11\n",
    b"\xff\xfe",
    b"\t",
];

#[test]
fn fuzz_loader_never_panics() {
    armor_testing::fuzz::run("loader", &[], TOKENS, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(set) = PolicySet::parse(&text, "fuzz.yaml") {
            let _ = CompiledPolicy::build(&set);
        }
    });
}
