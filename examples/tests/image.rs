#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a test failure"
)]
//! `scripts/image`: the image deploy/'s DaemonSet names, built from this test's
//! `armor-k8s-agent`, loaded into a private containerd and run there with runc
//! (`scripts/image --check`), and built the same byte for byte twice (reproducible).

use std::path::Path;
use std::process::Command;

/// Runs `scripts/image` with `args`; its output, or a panic with it.
fn image(args: &[&str]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(repo.join("scripts/image"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_armor-k8s-agent"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/image {args:?}:\n{text}");
    text
}

#[test]
fn the_daemonsets_image_is_built_reproducibly_and_runs_in_containerd() {
    let dir = std::env::temp_dir().join(format!("armor-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
    let version = env!("CARGO_PKG_VERSION");
    let first = image(&["--out", a.to_str().unwrap()]);
    assert!(
        first.contains(&format!(
            "image docker.io/library/armor-k8s-agent:{version}"
        )),
        "{first}"
    );
    image(&["--out", b.to_str().unwrap()]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds of the same binary differ"
    );
    let missing: Vec<&str> = ["containerd", "ctr", "runc"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    let ci = std::env::var("CI").is_ok_and(|v| v != "false");
    assert!(
        !ci || missing.is_empty(),
        "CI: scripts/test installs {missing:?}"
    );
    if !armor_testing::is_root() || !missing.is_empty() {
        println!(
            "run in containerd: skipped: needs root and containerd, ctr and runc (missing: \
             {missing:?}; scripts/test installs them)"
        );
    } else {
        let checked = image(&["--out", a.to_str().unwrap(), "--check"]);
        assert!(
            checked.contains(&format!("in the image: armor-k8s-agent {version}")),
            "{checked}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
