//! What the containerd tests of the runtime and of the whole agent (`runtime_enforcement.rs`,
//! `runtime_agent.rs`: two test binaries, so that they run in two guests side by side) share:
//! the busybox policy and image, a container spec for the private containerd, and the guest's
//! tmpfs on `/tmp`. Each binary includes the private containerd driver as `crate::support`.
#![allow(dead_code, reason = "each test binary uses part of this module")]

use armor_privileged_tests::guest;

pub(crate) const BUSYBOX_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: no-busybox, namespace: shop}
spec:
  severity: 7
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /bin/busybox
  action: Block
";

pub(crate) const CTRD_IMAGE: &str = "docker.io/armor-test/busybox:latest";

/// A Kubernetes-labelled container of the private containerd running `/bin/echo` (a symlink
/// to `/bin/busybox`, the executable the kernel checks).
pub(crate) fn ctrd_spec(name: &str, app: &str, uid: &str) -> crate::support::Spec {
    crate::support::Spec {
        id: format!("{:0>64}", format!("{uid}{}", std::process::id())),
        pod_uid: format!("{uid}-0000-4000-8000-{:012}", std::process::id()),
        labels: vec![
            ("io.kubernetes.pod.namespace".into(), "shop".into()),
            ("io.kubernetes.pod.name".into(), format!("{name}-0")),
            ("io.kubernetes.container.name".into(), name.into()),
            ("app".into(), app.into()),
        ],
        args: vec!["/bin/echo".into(), "entrypoint ran".into()],
        hooks: None,
    }
}

/// Mounts a tmpfs on `/tmp` inside the guest (its root is an overlay, and containerd's overlay
/// snapshots cannot have their upper directory on one); unmounted on drop.
pub(crate) struct GuestTmp(bool);

impl GuestTmp {
    pub(crate) fn mount() -> Self {
        if guest::current().is_none() {
            return Self(false);
        }
        nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=1777"),
        )
        .unwrap();
        Self(true)
    }
}

impl Drop for GuestTmp {
    fn drop(&mut self) {
        if self.0 {
            let _ = nix::mount::umount2("/tmp", nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Whose turn it is to use [`shared_bpflsm`]: held for a whole test.
pub(crate) type Turn = std::sync::MutexGuard<'static, ()>;

/// The BPF-LSM enforcer the tests of this binary hand to the runtime's (or the agent's)
/// enforcer selection (`EnforcementOptions::bpflsm_enforcer`), built with `config` by the first
/// caller: the first selection loads its programs (the kernel's verification of the 14
/// programs, about a minute and a half under TCG) and later ones find them loaded, as the
/// runtimes an embedder starts one after another in one process would. Every caller passes the
/// same `config` (checked). The tests take it in turn (the guard), and whatever an earlier test
/// left installed is removed first, so each test sees only its own workloads.
pub(crate) fn shared_bpflsm(
    config: armor_enforce_bpflsm::Config,
) -> (Turn, std::sync::Arc<armor_enforce_bpflsm::BpfLsm>) {
    use armor_core::enforcer::Enforcer as _;
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static SHARED: std::sync::OnceLock<(
        armor_enforce_bpflsm::Config,
        std::sync::Arc<armor_enforce_bpflsm::BpfLsm>,
    )> = std::sync::OnceLock::new();
    let turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (built_with, lsm) = SHARED.get_or_init(|| {
        (
            config,
            std::sync::Arc::new(armor_enforce_bpflsm::BpfLsm::new(config)),
        )
    });
    assert_eq!(
        *built_with, config,
        "the tests of one binary share one BPF-LSM configuration"
    );
    for key in lsm.installed() {
        eprintln!("removing `{key}`, left installed by an earlier test");
        lsm.remove(&key).unwrap();
    }
    (turn, lsm.clone())
}
