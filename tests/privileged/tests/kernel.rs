//! The test kernel's proofs: the guest booted the resolved kernel with the profile's LSMs, a
//! BPF-LSM program enforces per cgroup, AppArmor and SELinux policies deny and report, and the
//! helpers the enforcement tests build on work on this kernel.
//!
//! Run in the guest with `scripts/vm-test [--profile apparmor|selinux]`; on any other machine
//! each test either runs (the helpers need only root) or prints `skipped: <reason>`.
#![cfg(test)]

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use armor_privileged_tests::cgroup::{Cgroup, cgroup_of};
use armor_privileged_tests::fs::{Overlay, ScratchDir, Tmpfs, mount_of, scratch_9p};
use armor_privileged_tests::guest::{self, Profile};
use armor_privileged_tests::kmsg::{AuditRecord, KernelLog};
use armor_privileged_tests::op::{Capability, Op, Runner, helper_path};
use armor_privileged_tests::{self as armor, Error, Unsupported, bpf, lsm, require, require_root};
use nix::errno::Errno;

const NOBODY: u32 = 65534;

/// The boot check every test starts with: in the guest, a wrong kernel or LSM list fails every
/// test before it proves anything.
fn boot_checked() {
    static ONCE: Once = Once::new();
    ONCE.call_once(check_boot);
}

fn check_boot() {
    let Some(g) = guest::current() else { return };
    let profile = g
        .profile
        .unwrap_or_else(|| panic!("unknown guest profile `{}`", g.profile_name));
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim();
    let expected = g.kernel_release.expect("the runner passes armor_vm_kver=");
    assert_eq!(
        release, expected,
        "the guest booted another kernel than the resolved package"
    );
    let mut version = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap(), version.next().unwrap());
    assert!(
        (major, minor) >= (6, 1),
        "kernel {release} is older than 6.1"
    );
    let lsms = lsm::active().unwrap();
    assert_eq!(
        lsms,
        profile.expected_lsms(),
        "active LSMs of the {profile} profile"
    );
}

mod boot {
    use super::*;

    #[test]
    fn kernel_release_and_lsm_list() {
        boot_checked();
        let in_guest = guest::current().map(|_| ()).ok_or_else(|| {
            let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let lsms = lsm::active().map_or_else(|e| armor::error_chain(&e), |l| l.join(","));
            Error::Unsupported(Unsupported::new(format!(
                "not in the test guest (no armor_vm_profile= in /proc/cmdline): host kernel {}, LSMs {lsms}",
                release.trim(),
            )))
        });
        require!(in_guest);
        // check_boot ran the assertions; repeat the LSM check here so this test names it.
        let profile = guest::current().and_then(|g| g.profile).unwrap();
        assert_eq!(lsm::active().unwrap(), profile.expected_lsms());
    }
}

mod bpf_lsm {
    use super::*;

    #[test]
    fn exec_denied_with_eperm_in_the_chosen_cgroup_only() {
        boot_checked();
        require!(require_root());
        let mut prog = require!(bpf::DenyExec::load());

        let dir = ScratchDir::new("bpf-exec").unwrap();
        let helper = fs::read(helper_path()).unwrap();
        let denied_exe = dir.create_file("denied-exe", &helper, 0o755).unwrap();
        let other_exe = dir.create_file("other-exe", &helper, 0o755).unwrap();
        let workload = Cgroup::create("bpf-workload").unwrap();
        let sibling = Cgroup::create("bpf-sibling").unwrap();
        let ino = fs::metadata(&denied_exe).unwrap().ino();
        prog.deny(workload.id(), ino).unwrap();

        let exec = |path: &Path| Op::exec(path, &["open", "/", "rdonly,directory"]);
        let in_workload = Runner::new().in_cgroup(&workload);
        let denied = in_workload.run(&exec(&denied_exe)).unwrap();
        assert_eq!(denied.errno, Some(Errno::EPERM), "{denied:?}");
        let other = in_workload.run(&exec(&other_exe)).unwrap();
        assert!(
            other.succeeded(),
            "another executable in the cgroup: {other:?}"
        );
        let outside = Runner::new()
            .in_cgroup(&sibling)
            .run(&exec(&denied_exe))
            .unwrap();
        assert!(
            outside.succeeded(),
            "the same executable in a sibling cgroup: {outside:?}"
        );
        let here = Runner::new().run(&exec(&denied_exe)).unwrap();
        assert!(
            here.succeeded(),
            "the same executable in the test's cgroup: {here:?}"
        );
        assert_eq!(prog.denied_count().unwrap(), 1);
    }
}

mod helpers {
    use super::*;

    /// Whether a 64-bit little-endian ELF image has a `PT_INTERP` program header (a dynamic
    /// loader).
    fn has_program_interpreter(image: &[u8]) -> bool {
        const PT_INTERP: u32 = 3;
        assert_eq!(&image[..5], b"\x7fELF\x02", "a 64-bit ELF image");
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([image[o], image[o + 1]]));
        let phoff = u64::from_le_bytes(image[0x20..0x28].try_into().unwrap());
        let (entsize, count) = (u16_at(0x36), u16_at(0x38));
        (0..count).any(|i| {
            let o = usize::try_from(phoff).unwrap() + i * entsize;
            u32::from_le_bytes(image[o..o + 4].try_into().unwrap()) == PT_INTERP
        })
    }

    #[test]
    fn elf_interpreter_check_tells_static_from_dynamic() {
        assert!(has_program_interpreter(&fs::read("/bin/sh").unwrap()));
        assert!(!has_program_interpreter(&fs::read(helper_path()).unwrap()));
    }

    #[test]
    fn workload_cgroup_runs_commands_and_has_its_id() {
        boot_checked();
        require!(require_root());
        let cg = Cgroup::create("helper").unwrap();
        assert_eq!(cg.id(), fs::metadata(cg.path()).unwrap().ino());
        let parent = fs::metadata(cg.path().parent().unwrap()).unwrap().ino();
        assert_ne!(cg.id(), parent);
        let out = Runner::new()
            .in_cgroup(&cg)
            .run(&Op::exec("/bin/cat", &["/proc/self/cgroup"]))
            .unwrap();
        assert!(out.succeeded(), "{out:?}");
        let line = format!("0::{}", cg.relative_path().unwrap().display());
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line} not in {:?}",
            out.stdout
        );
        assert!(cg.procs().unwrap().is_empty());
        assert_ne!(
            cgroup_of(std::process::id()).unwrap(),
            cg.relative_path().unwrap()
        );
    }

    #[test]
    fn commands_run_as_another_uid() {
        boot_checked();
        require!(require_root());
        let tmp = Tmpfs::mount("").unwrap();
        let private = tmp.create_file("root-only", b"x", 0o600).unwrap();
        let root = Runner::new().run(&Op::open(&private, "rdonly")).unwrap();
        assert!(root.succeeded(), "{root:?}");
        let nobody = Runner::new().as_user(NOBODY, NOBODY);
        let denied = nobody.run(&Op::open(&private, "rdonly")).unwrap();
        assert_eq!(denied.errno, Some(Errno::EACCES), "{denied:?}");
        let id = nobody.run(&Op::exec("/usr/bin/id", &["-u"])).unwrap();
        assert_eq!(id.stdout.trim(), NOBODY.to_string());
        let setuid = nobody.run(&Op::Cap(Capability::SetUid)).unwrap();
        assert_eq!(setuid.errno, Some(Errno::EPERM), "{setuid:?}");
        assert!(
            Runner::new()
                .run(&Op::Cap(Capability::SetUid))
                .unwrap()
                .succeeded()
        );
    }

    #[test]
    fn files_on_tmpfs_overlayfs_and_9p() {
        boot_checked();
        require!(require_root());
        let tmp = Tmpfs::mount("").unwrap();
        let f = tmp.create_file("t", b"tmpfs", 0o644).unwrap();
        assert_eq!(mount_of(&f).unwrap().fstype, "tmpfs");

        let ovl = Overlay::mount(&[("from-lower", b"lower")]).unwrap();
        let lower = ovl.path().join("from-lower");
        assert_eq!(fs::read(&lower).unwrap(), b"lower");
        let upper = ovl.create_file("from-upper", b"upper", 0o644).unwrap();
        assert_eq!(mount_of(&upper).unwrap().fstype, "overlay");
        assert!(ovl.lower().join("from-lower").exists());
        assert!(
            Runner::new()
                .run(&Op::open(&lower, "rdonly"))
                .unwrap()
                .succeeded()
        );

        let nine = require!(scratch_9p());
        let f = nine.create_file("n", b"9p", 0o644).unwrap();
        assert_eq!(mount_of(&f).unwrap().fstype, "9p");
        assert!(
            Runner::new()
                .run(&Op::open(&f, "rdonly"))
                .unwrap()
                .succeeded()
        );
    }

    #[test]
    fn static_helper_reports_each_operation() {
        boot_checked();
        require!(require_root());
        let image = fs::read(helper_path()).unwrap();
        assert!(
            !has_program_interpreter(&image),
            "armor-op must be statically linked"
        );
        let run = |op: Op| Runner::new().run(&op).unwrap();
        assert!(run(Op::socket("inet", "stream", "tcp")).succeeded());
        assert_eq!(
            run(Op::socket("9999", "stream", "0")).errno,
            Some(Errno::EAFNOSUPPORT)
        );
        assert_eq!(
            run(Op::open("/nonexistent/x", "rdonly")).errno,
            Some(Errno::ENOENT)
        );
        assert!(run(Op::Cap(Capability::NetRaw)).succeeded());
        assert!(run(Op::Cap(Capability::SysAdmin)).succeeded());
        let exec = run(Op::exec("/nonexistent/exe", &[]));
        assert_eq!(exec.errno, Some(Errno::ENOENT));

        let root = Tmpfs::mount("").unwrap();
        root.create_file("inside", b"x", 0o644).unwrap();
        let chroot_open = |path: &str| Op::ChrootOpen {
            root: root.path().to_owned(),
            path: path.into(),
            flags: "rdonly".into(),
        };
        assert!(run(chroot_open("/inside")).succeeded());
        assert_eq!(run(chroot_open("/etc/hostname")).errno, Some(Errno::ENOENT));
        let nobody = Runner::new().as_user(NOBODY, NOBODY);
        let denied = nobody.run(&chroot_open("/inside")).unwrap();
        assert_eq!(
            denied.errno,
            Some(Errno::EPERM),
            "chroot without CAP_SYS_CHROOT"
        );
        let chown = nobody
            .run(&Op::Cap(Capability::Chown(root.path().join("inside"))))
            .unwrap();
        assert_eq!(chown.errno, Some(Errno::EPERM));
    }
}

mod apparmor {
    use super::*;

    #[test]
    fn profile_denies_a_read_and_the_denial_is_logged() {
        boot_checked();
        guest::require_profile(Profile::AppArmor).unwrap();
        require!(require_root());
        require!(armor::apparmor::probe());

        let dir = ScratchDir::new("apparmor").unwrap();
        let allowed = dir.create_file("allowed", b"ok", 0o644).unwrap();
        let secret = dir.create_file("secret", b"no", 0o644).unwrap();
        let name = format!("armor-test-read-{}", std::process::id());
        // `secret` is left out of the profile: an implicit deny is audited, `deny` is silent.
        let text = format!(
            "profile {name} {{\n  {} r,\n  /dev/null rw,\n}}\n",
            allowed.display()
        );
        let profile = armor::apparmor::LoadedProfile::load(&name, &text).unwrap();

        let mut log = KernelLog::open_at_end().unwrap();
        let confined = Runner::new().apparmor_profile(profile.name());
        let ok = confined.run(&Op::open(&allowed, "rdonly")).unwrap();
        assert!(ok.succeeded(), "{ok:?}");
        let denied = confined.run(&Op::open(&secret, "rdonly")).unwrap();
        assert_eq!(denied.errno, Some(Errno::EACCES), "{denied:?}");
        let unconfined = Runner::new().run(&Op::open(&secret, "rdonly")).unwrap();
        assert!(unconfined.succeeded(), "{unconfined:?}");

        let secret_name = secret.display().to_string();
        let record = log
            .wait_for(Duration::from_secs(5), |msg| {
                AuditRecord::parse(msg).filter(|r| {
                    r.get("apparmor") == Some("DENIED") && r.get("name") == Some(&secret_name)
                })
            })
            .unwrap()
            .expect("no AppArmor DENIED record for the secret in the kernel log");
        assert_eq!(record.record_type, 1400);
        assert_eq!(record.get("operation"), Some("open"));
        assert_eq!(record.get("profile"), Some(name.as_str()));
        assert_eq!(record.get("requested_mask"), Some("r"));
        assert_eq!(record.get("denied_mask"), Some("r"));
        assert_eq!(record.get("comm"), Some("armor-op"));
    }
}

mod selinux {
    use super::*;

    const POLICY: &str = include_str!("data/deny-secret.cil");

    #[test]
    fn cil_policy_makes_a_labelled_file_unreadable_when_enforcing() {
        boot_checked();
        guest::require_profile(Profile::SeLinux).unwrap();
        require!(require_root());
        require!(armor::selinux::probe());

        let policy = armor::selinux::compile(POLICY).unwrap();
        armor::selinux::load(&policy).unwrap();
        let secret_fs = Tmpfs::mount("context=armor_u:object_r:armor_secret_t").unwrap();
        let secret = secret_fs.create_file("secret", b"no", 0o644).unwrap();
        let plain_fs = Tmpfs::mount("").unwrap();
        let plain = plain_fs.create_file("plain", b"ok", 0o644).unwrap();
        assert_eq!(
            armor::selinux::file_context(&secret).unwrap(),
            "armor_u:object_r:armor_secret_t"
        );

        let open = |p: &Path| Runner::new().run(&Op::open(p, "rdonly")).unwrap();
        assert!(open(&secret).succeeded(), "permissive mode allows the read");
        let _enforcing = armor::selinux::enforce().unwrap();
        assert!(armor::selinux::enforcing().unwrap());
        let denied = open(&secret);
        assert_eq!(denied.errno, Some(Errno::EACCES), "{denied:?}");
        assert!(
            open(&plain).succeeded(),
            "a file with another label stays readable"
        );
        let stat = fs::metadata(&secret);
        assert!(stat.is_ok(), "getattr stays allowed: {stat:?}");
    }
}

/// Issue 21: syscall rules on syscalls the event source's classic programs do not trace, through
/// the in-kernel syscall filter on the raw syscall tracepoint: only the workload whose rules name
/// a syscall reports it (whatever its visibility), with its path argument, and the engine
/// decides it as the rule says.
mod syscall_filter {
    use super::*;
    use armor_core::{CompiledPolicy, PolicySet, Posture, Verdict, Visibility, Workload};
    use armor_ebpf::{EventKind, EventSource, Options, Translator};
    use std::process::Command;
    use std::time::Instant;

    const POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: rare-syscalls}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: node-1}}
  severity: 4
  syscalls:
    matchSyscalls:
    - syscall: [ptrace, setuid, unshare, init_module]
    matchPaths:
    - path: /tmp/
      syscall: [mount]
  action: Audit
";

    fn sys(cg: &Cgroup, name: &str) -> String {
        let out = Command::new(helper_path())
            .arg("--cgroup")
            .arg(cg.path())
            .args(["sys", name])
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(254), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn named_syscalls_of_the_filtered_workload_only_with_their_paths() {
        boot_checked();
        require!(require_root());
        let mut source =
            EventSource::load(Options::default().default_visibility(Visibility::none())).unwrap();
        let cg = Cgroup::create("sysfilter").unwrap();
        let other = Cgroup::create("sysfilter-other").unwrap();
        let controls = source.controls();
        // No visibility at all: the filter reports what the rules name regardless.
        controls
            .set_visibility(cg.id(), &Visibility::none())
            .unwrap();
        controls
            .set_visibility(other.id(), &Visibility::none())
            .unwrap();
        let set = PolicySet::parse(POLICY, "rare.yaml").unwrap();
        let policy = CompiledPolicy::build(&set).unwrap();
        let mut host = armor_core::Host::new("node-1");
        host.labels
            .insert("kubernetes.io/hostname".into(), "node-1".into());
        let rules = policy.rule_set(&Workload::Host(host), Posture::default());
        let named = ["ptrace", "setuid", "unshare", "init_module", "mount"];
        let numbers: Vec<u16> = named
            .iter()
            .map(|n| armor_core::syscalls::number(n).unwrap())
            .collect();
        controls.set_syscalls(cg.id(), &numbers).unwrap();
        let mut results = Vec::new();
        for n in named {
            results.push((n, sys(&cg, n)));
        }
        // Not named: getppid; named, but by another workload's rules only: ptrace elsewhere.
        let unnamed = sys(&cg, "getppid");
        let elsewhere = sys(&other, "ptrace");
        let mut events = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            source
                .poll(Duration::from_millis(50), &mut |e| {
                    if matches!(e.kind, EventKind::Named { .. }) {
                        events.push(e.clone());
                    }
                })
                .unwrap();
            if events.iter().filter(|e| e.cgroup_id == cg.id()).count() >= named.len() {
                source
                    .poll(Duration::from_millis(300), &mut |e| {
                        if matches!(e.kind, EventKind::Named { .. }) {
                            events.push(e.clone());
                        }
                    })
                    .unwrap();
                break;
            }
        }
        controls.set_syscalls(cg.id(), &[]).unwrap();
        let summary: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "{} cg {} {:?} ret {}",
                    e.syscall.name(),
                    e.cgroup_id,
                    e.kind,
                    e.ret
                )
            })
            .collect();
        println!("results {results:?}; getppid `{unnamed}`; ptrace elsewhere `{elsewhere}`");
        println!("{}", summary.join("\n"));
        assert!(
            events.iter().all(|e| e.cgroup_id == cg.id()),
            "only the filtered workload reports: {summary:?}"
        );
        let mut translator = Translator::default();
        let path_of = |e: &armor_ebpf::Event| match &e.kind {
            EventKind::Named { path, .. } => path.clone(),
            _ => None,
        };
        for n in named {
            // mount: the call on /tmp (the op first makes `/` private, another mount call).
            let e = events
                .iter()
                .find(|e| {
                    e.syscall.name() == n && (n != "mount" || path_of(e).as_deref() == Some("/tmp"))
                })
                .unwrap_or_else(|| panic!("{n} not reported: {summary:?}"));
            if n != "mount" {
                assert_eq!(path_of(e), None, "{e:?}");
            }
            let t = translator.translate(e, source.process_tree()).unwrap();
            assert_eq!(t.data, format!("syscall=SYS_{}", n.to_ascii_uppercase()));
            let d = rules.decide(&t.decide[0].0);
            assert_eq!(d.verdict, Verdict::Audit, "{n}: {d:?}");
        }
        // The mount of `/` (propagation) is reported too, and outside the rule's /tmp/.
        let root = events
            .iter()
            .find(|e| e.syscall.name() == "mount" && path_of(e).as_deref() == Some("/"))
            .unwrap_or_else(|| panic!("mount of / not reported: {summary:?}"));
        let t = translator.translate(root, source.process_tree()).unwrap();
        assert_eq!(rules.decide(&t.decide[0].0).verdict, Verdict::Allow);
        assert!(
            !summary.iter().any(|s| s.starts_with("getppid")),
            "{summary:?}"
        );
    }
}
