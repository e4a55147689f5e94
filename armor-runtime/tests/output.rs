#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The outputs: a file rotated by size keeps whole lines and the kept count, and several
//! outputs get the same bytes.

use std::io::Write;

use armor_runtime::output::{RotatingFile, Tee};

#[test]
fn a_rotated_file_keeps_whole_lines_and_the_kept_count() {
    let dir = std::env::temp_dir().join(format!("armor-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.jsonl");
    let mut f = RotatingFile::open(&path, 1_000, 2).unwrap();
    let mut written = 0;
    // Batches of 3 lines of 100 bytes, flushed after each batch as the agent does.
    for batch in 0..20 {
        for i in 0..3 {
            let line = format!(
                "{{\"batch\":{batch},\"i\":{i},\"pad\":\"{}\"}}\n",
                "x".repeat(70)
            );
            f.write_all(line.as_bytes()).unwrap();
            written += 1;
        }
        f.flush().unwrap();
    }
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let files = [
        path.clone(),
        dir.join("alerts.jsonl.1"),
        dir.join("alerts.jsonl.2"),
    ];
    assert!(!dir.join("alerts.jsonl.3").exists(), "keep 2");
    let mut lines = 0;
    for p in &files[1..] {
        let text = read(p);
        // Each rotated file crossed the limit by one batch at most, and holds whole lines.
        assert!(
            (1_000..1_000 + 3 * 110).contains(&text.len()),
            "{}: {}",
            p.display(),
            text.len()
        );
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
            lines += 1;
        }
    }
    lines += read(&files[0]).lines().count();
    assert!(lines < written, "older files were dropped");
    // The newest lines are in the current file, in order, after those of FILE.1.
    let last: serde_json::Value = serde_json::from_str(
        read(&files[0])
            .lines()
            .last()
            .unwrap_or(read(&files[1]).lines().last().unwrap()),
    )
    .unwrap();
    assert_eq!(last["batch"], 19);
    // Moved away by someone else: the next flush goes on in a new file at the path.
    std::fs::rename(&path, dir.join("moved.jsonl")).unwrap();
    f.write_all(b"{\"after\":\"move\"}\n").unwrap();
    f.flush().unwrap();
    f.write_all(b"{\"next\":1}\n").unwrap();
    f.flush().unwrap();
    assert_eq!(read(&path), "{\"next\":1}\n");
    // Opened again, it appends and counts what is there.
    drop(f);
    let mut again = RotatingFile::open(&path, 1_000, 2).unwrap();
    again.write_all(b"{}\n").unwrap();
    again.flush().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_outputs_get_the_same_bytes_and_an_error_names_its_output() {
    let dir = std::env::temp_dir().join(format!("armor-tee-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    let mut tee = Tee::new(vec![
        Box::new(RotatingFile::open(&a, 1 << 20, 1).unwrap()),
        Box::new(RotatingFile::open(&b, 1 << 20, 1).unwrap()),
    ]);
    tee.write_all(b"{\"x\":1}\n").unwrap();
    tee.flush().unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // /dev/full: every write fails with ENOSPC.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut tee = Tee::new(vec![
        Box::new(RotatingFile::open(&a, 1 << 20, 1).unwrap()),
        Box::new(std::io::BufWriter::with_capacity(0, full)),
    ]);
    let e = tee.write_all(b"{\"x\":2}\n").unwrap_err();
    assert!(e.to_string().starts_with("output 2: "), "{e}");
    tee.flush().unwrap();
    assert!(
        std::fs::read_to_string(&a)
            .unwrap()
            .ends_with("{\"x\":2}\n"),
        "the others still get it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
