#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Real events on the host kernel: the test runs commands in a cgroup of its own, makes only
//! that cgroup visible, and checks the events the kernel reported.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use armor_core::Visibility;
use armor_ebpf::{Event, EventKind, EventSource, Options, SockAddr, Syscall};
use armor_testing::cgroup::Cgroup;

static N: AtomicU32 = AtomicU32::new(0);

/// Root is needed to load BPF programs; anything else is a real failure.
fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    println!("skipping: loading eBPF programs needs root (euid is not 0)");
    false
}

/// Runs `script` with sh inside `cg`.
fn run(cg: &Cgroup, script: &str) -> std::process::Output {
    cg.sh(script).unwrap()
}

fn collect_until(
    source: &mut EventSource,
    deadline: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < deadline {
        source
            .poll(Duration::from_millis(50), &mut |e| got.push(e.clone()))
            .unwrap();
        if done(&got) {
            break;
        }
    }
    got
}

#[test]
fn reports_process_file_and_network_events_of_a_visible_cgroup_only() {
    if !root_or_skip() {
        return;
    }
    let cg = Cgroup::create("ebpf").unwrap();
    let mut source = EventSource::load(Options::default()).unwrap();
    let controls = source.controls();
    controls
        .set_visibility(cg.id(), &Visibility::standard())
        .unwrap();

    let work = tempdir();
    fs::write(work.join("f"), "x").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Outside the cgroup: must not be reported.
    let _ = fs::read(work.join("outside-only"));

    let script = format!(
        "cd {w} && /bin/cat ./f >/dev/null && /bin/cat ./missing 2>/dev/null; \
         mkdir sub && mv sub sub2 && rmdir sub2 && chmod 600 f && rm f; \
         exec 3<>/dev/tcp/127.0.0.1/{port}; true",
        w = work.display()
    );
    // dash has no /dev/tcp: use bash for the network part when present.
    let out = if std::path::Path::new("/bin/bash").exists() {
        run(&cg, &format!("exec /bin/bash -c \"{script}\""))
    } else {
        run(&cg, &script)
    };
    assert!(out.status.success() || !out.stderr.is_empty(), "{out:?}");
    let w = work.display().to_string();
    // Shells may also connect to local sockets of their own (nscd, sssd): only the
    // TCP connect to our listener ends the collection and is checked below.
    let is_our_connect = |e: &Event| {
        e.syscall == Syscall::Connect
            && matches!(
                &e.kind,
                EventKind::Net {
                    addr: Some(SockAddr::Inet { .. }),
                    ..
                }
            )
    };
    let events = collect_until(&mut source, Duration::from_secs(10), |ev| {
        ev.iter().any(is_our_connect) && ev.iter().any(|e| e.syscall == Syscall::Exit)
    });
    let summary: Vec<String> = events
        .iter()
        .map(|e| format!("{:?} {:?} ret={}", e.syscall, e.kind, e.ret))
        .collect();
    let dump = summary.join("\n");

    // Every event comes from the test cgroup.
    assert!(events.iter().all(|e| e.cgroup_id == cg.id()), "{dump}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::File(f) if f.path.ends_with("outside-only"))),
        "{dump}"
    );
    // exec with argv; namespaces and ids filled in.
    let exec = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Exec { argv, .. } if argv.first().map(String::as_str) == Some("/bin/cat")))
        .unwrap_or_else(|| panic!("no exec of cat:\n{dump}"));
    let EventKind::Exec {
        path, argv, args, ..
    } = &exec.kind
    else {
        unreachable!()
    };
    // The arguments after the program name, exactly, for allowedArgs.
    assert_eq!(args.as_deref(), Some(&["./f".to_owned()][..]), "{exec:?}");
    assert_eq!(
        path,
        &fs::canonicalize("/bin/cat").unwrap().display().to_string()
    );
    assert_eq!(argv, &["/bin/cat", "./f"]);
    assert!(
        exec.pid_ns > 0 && exec.mnt_ns > 0 && exec.ppid > 0,
        "{exec:?}"
    );
    let my_pidns = fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(my_pidns.to_string_lossy(), format!("pid:[{}]", exec.pid_ns));
    // The relative open was made absolute; the failed one carries -ENOENT.
    let open_ok = events.iter().find(|e| {
        matches!(&e.kind, EventKind::File(f) if f.path == format!("{w}/f") && f.raw_path == "./f")
            && matches!(e.syscall, Syscall::Openat | Syscall::Open)
    });
    let open_ok = open_ok.unwrap_or_else(|| panic!("no open of ./f:\n{dump}"));
    assert!(open_ok.ret >= 0, "{open_ok:?}");
    assert_eq!(open_ok.comm, "cat");
    let missing = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::File(f) if f.path == format!("{w}/missing")))
        .unwrap_or_else(|| panic!("no open of ./missing:\n{dump}"));
    assert_eq!(missing.ret, -2);
    // File syscalls.
    let has = |sys: &[Syscall], path: &str| {
        events.iter().any(|e| {
            sys.contains(&e.syscall)
                && matches!(&e.kind, EventKind::File(f) if f.path == format!("{w}/{path}"))
                && e.ret == 0
        })
    };
    assert!(has(&[Syscall::Mkdir, Syscall::Mkdirat], "sub"), "{dump}");
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::File(f)
            if f.path == format!("{w}/sub") && f.target.as_deref() == Some(&*format!("{w}/sub2")))),
        "{dump}"
    );
    assert!(has(&[Syscall::Rmdir, Syscall::Unlinkat], "sub2"), "{dump}");
    assert!(has(&[Syscall::Chmod, Syscall::Fchmodat], "f"), "{dump}");
    assert!(has(&[Syscall::Unlink, Syscall::Unlinkat], "f"), "{dump}");
    // Network: socket + connect to our listener.
    if std::path::Path::new("/bin/bash").exists() {
        assert!(
            events.iter().any(|e| matches!(
                e.kind,
                EventKind::Socket {
                    family: 2,
                    sock_type: 1,
                    ..
                }
            )),
            "{dump}"
        );
        let connect = events
            .iter()
            .find(|e| is_our_connect(e))
            .unwrap_or_else(|| panic!("no TCP connect:\n{dump}"));
        assert!(
            matches!(&connect.kind, EventKind::Net { addr: Some(SockAddr::Inet { port: p, ip }), .. }
                if *p == port && ip.to_string() == "127.0.0.1"),
            "{connect:?}"
        );
        assert_eq!(connect.ret, 0);
    }
    // fork and exit, and the process tree followed them.
    assert!(events.iter().any(|e| e.syscall == Syscall::Fork), "{dump}");
    assert!(events.iter().any(|e| e.syscall == Syscall::Exit), "{dump}");
    let tree = source.process_tree();
    let cat = tree.get(exec.pid).unwrap();
    assert_eq!(cat.cmdline, "/bin/cat ./f");
    assert_eq!(controls.stats().unwrap().lost, 0);
    assert_eq!(source.decode_errors(), 0);
    drop(listener);
    fs::remove_dir_all(&work).unwrap();
}

#[test]
fn losses_are_counted_in_the_kernel() {
    if !root_or_skip() {
        return;
    }
    let cg = Cgroup::create("ebpf").unwrap();
    // One page of ring buffer holds six records: a burst without reading must overflow it.
    let mut source =
        EventSource::load(Options::default().ring_bytes(4096).seed_process_tree(false)).unwrap();
    let controls = source.controls();
    controls
        .set_visibility(cg.id(), &Visibility::standard())
        .unwrap();
    let before = controls.stats().unwrap();
    let out = run(
        &cg,
        "i=0; while [ $i -lt 200 ]; do : < /etc/hostname; i=$((i+1)); done",
    );
    assert!(out.status.success(), "{out:?}");
    let after = controls.stats().unwrap();
    let mut read = 0u64;
    source
        .poll(Duration::from_millis(10), &mut |_| read += 1)
        .unwrap();
    assert!(read <= 6, "read {read}");
    // 200 opens + exec/fork/exit, all in the cgroup: whatever was not read was counted.
    assert!(
        after.lost - before.lost >= 200 - read,
        "{before:?} {after:?} read {read}"
    );
    // The visibility filter: a cgroup with file visibility off reports no opens.
    controls
        .set_visibility(cg.id(), &"process".parse().unwrap())
        .unwrap();
    let mid = controls.stats().unwrap();
    let out = run(
        &cg,
        "i=0; while [ $i -lt 50 ]; do : < /etc/hostname; i=$((i+1)); done",
    );
    assert!(out.status.success());
    let mut files = 0;
    for _ in 0..5 {
        source
            .poll(Duration::from_millis(10), &mut |e| {
                if matches!(e.kind, EventKind::File(_)) {
                    files += 1
                }
            })
            .unwrap();
    }
    assert_eq!(files, 0);
    assert!(controls.stats().unwrap().lost - mid.lost < 50);
}

fn tempdir() -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "armor-ebpf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&p).unwrap();
    p
}
