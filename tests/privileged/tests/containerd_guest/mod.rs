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
