#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Reading a policy directory safely ([`PolicyFiles`]): a symbolic link loop, a link to
//! `/dev/zero`, a FIFO, an oversized file and a directory deeper than the limit are each an
//! error naming the path (and none hangs or exhausts memory); a Kubernetes ConfigMap volume's
//! layout loads each policy once; the fingerprint follows the content, not sizes and times.

use std::path::{Path, PathBuf};
use std::time::Duration;

use armor_core::{Config, LoadLimits, MAX_DIR_DEPTH, PolicyFiles, PolicySet};

const POLICY: &str = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: NAME, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/shadow}]
  action: Block
";

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("armor-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn policy(name: &str) -> String {
    POLICY.replace("NAME", name)
}

/// Reads `d` on another thread, failing the test if that takes more than 10 s (a FIFO opened
/// for reading without `O_NONBLOCK` would block forever).
fn read_bounded(d: &Path, limits: LoadLimits) -> PolicyFiles {
    let d = d.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(PolicyFiles::read(&[&d], &limits));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("reading the directory hung")
}

/// The one problem about `name`, as text.
fn problem(files: &PolicyFiles, name: &str) -> String {
    let found: Vec<String> = files
        .problems()
        .iter()
        .map(ToString::to_string)
        .filter(|p| p.contains(name))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", files.problems());
    found[0].clone()
}

#[test]
fn links_fifos_and_oversized_files_are_errors_naming_the_path_and_nothing_hangs() {
    let d = dir("hostile");
    std::fs::write(d.join("good.yaml"), policy("good")).unwrap();
    std::os::unix::fs::symlink("loop.yaml", d.join("loop.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.yaml")).unwrap();
    std::os::unix::fs::symlink(".", d.join("self")).unwrap();
    nix_mkfifo(&d.join("fifo.yaml"));
    std::fs::write(d.join("big.yaml"), "#".repeat(2048)).unwrap();
    let mut limits = LoadLimits::default();
    limits.max_bytes = 1024;

    let files = read_bounded(&d, limits);
    assert_eq!(
        files.files().map(|(n, _)| n.to_owned()).collect::<Vec<_>>(),
        [d.join("good.yaml").display().to_string()]
    );
    let lp = problem(&files, "loop.yaml");
    assert!(lp.contains("does not resolve"), "{lp}");
    let zero = problem(&files, "zero.yaml");
    assert!(
        zero.contains("out of") && zero.contains("/dev/zero"),
        "{zero}"
    );
    let selfdir = problem(&files, "/self");
    assert!(
        selfdir.contains("a symbolic link to a directory"),
        "{selfdir}"
    );
    let fifo = problem(&files, "fifo.yaml");
    assert!(fifo.contains("not a regular file"), "{fifo}");
    let big = problem(&files, "big.yaml");
    assert!(big.contains("larger than 1024 bytes"), "{big}");
    assert_eq!(files.problems().len(), 5);

    // Loading refuses the whole set, with every problem and its path.
    let mut config = Config::default();
    config.load_limits = limits;
    let err = files.load(&config).unwrap_err().to_string();
    for name in ["loop.yaml", "zero.yaml", "fifo.yaml", "big.yaml"] {
        assert!(err.contains(name), "{name} missing in: {err}");
    }
    // And so does the one-call loader.
    assert!(PolicySet::load_paths(&[&d], &config).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

fn nix_mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_directory_deeper_than_the_limit_is_an_error() {
    let d = dir("deep");
    let mut p = d.clone();
    for i in 0..=MAX_DIR_DEPTH {
        p = p.join(format!("l{i}"));
    }
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("deep.yaml"), policy("deep")).unwrap();
    let files = read_bounded(&d, LoadLimits::default());
    let deep = problem(&files, &format!("l{MAX_DIR_DEPTH}"));
    assert!(deep.contains("directory levels below"), "{deep}");
    assert_eq!(files.files().count(), 0);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A ConfigMap volume: the data in `..<timestamp>/`, `..data` linking to it, each key a link
/// to `..data/<key>`. Each policy loads once; hidden entries are not read.
#[test]
fn a_configmap_volume_loads_each_policy_once() {
    let d = dir("configmap");
    let stamp = d.join("..2026_12_07_21_00_00.123456789");
    std::fs::create_dir_all(&stamp).unwrap();
    std::fs::write(stamp.join("a.yaml"), policy("a")).unwrap();
    std::fs::write(stamp.join("b.yaml"), policy("b")).unwrap();
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), d.join("..data")).unwrap();
    for k in ["a.yaml", "b.yaml"] {
        std::os::unix::fs::symlink(format!("..data/{k}"), d.join(k)).unwrap();
    }
    std::fs::write(d.join(".a.yaml.swp"), "not yaml: [").unwrap();
    let files = read_bounded(&d, LoadLimits::default());
    assert!(files.problems().is_empty(), "{:#?}", files.problems());
    let set = files.load(&Config::default()).unwrap();
    let names: Vec<&str> = set.policies().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// The fingerprint follows the content: a rewrite of the same size with the modification time
/// put back (what a size+mtime comparison misses) changes it; reading again does not.
#[test]
fn the_fingerprint_follows_the_content_not_sizes_and_times() {
    let d = dir("fingerprint");
    let f = d.join("p.yaml");
    std::fs::write(&f, policy("one")).unwrap();
    let before = PolicyFiles::read(&[&d], &LoadLimits::default());
    assert_eq!(
        before.fingerprint(),
        PolicyFiles::read(&[&d], &LoadLimits::default()).fingerprint()
    );
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, policy("two")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let meta = std::fs::metadata(&f).unwrap();
    assert_eq!(meta.len(), policy("one").len() as u64);
    assert_eq!(meta.modified().unwrap(), mtime);
    let after = PolicyFiles::read(&[&d], &LoadLimits::default());
    assert_ne!(before.fingerprint(), after.fingerprint());
    std::fs::remove_dir_all(&d).unwrap();
}
