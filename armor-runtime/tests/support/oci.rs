//! A busybox OCI image built in memory: one uncompressed tar layer (busybox and its applet
//! links), the image config and manifest, with sha256 digests; and the OCI runtime spec of a
//! container and of an exec'd process.

use std::fmt::Write as _;

use containerd_client::types::Descriptor;

/// An uncompressed OCI layer.
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The OCI image config.
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI image manifest.
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The applets linked in `/bin`.
pub(crate) const APPLETS: &[&str] = &["sh", "cat", "touch", "sleep", "ls", "echo", "rm", "mkdir"];

/// Whether `elf` is an ELF executable without a program interpreter (statically linked).
pub(crate) fn is_static_elf(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        // PT_INTERP = 3
        elf.len() >= o + 4 && u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) != 3
    })
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 (FIPS 180-4) of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The OCI digest (`sha256:<hex>`) of `data`.
pub(crate) fn digest(data: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in sha256(data) {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// One ustar header block.
pub(crate) fn tar_header(name: &str, mode: u32, size: usize, kind: u8, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(name.len() < 100 && link.len() < 100, "{name} {link}");
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mut octal = |off: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[off..off + width].copy_from_slice(s.as_bytes());
    };
    octal(100, 8, u64::from(mode));
    octal(108, 8, 0); // uid
    octal(116, 8, 0); // gid
    octal(124, 12, size as u64);
    octal(136, 12, 1_700_000_000); // mtime
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A tar layer: the root directories, `/bin/busybox` with its applet links, and `files`
/// (`path` relative to `/`, mode 0644).
pub(crate) fn busybox_layer(busybox: &[u8], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    let file = |tar: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]| {
        tar.extend_from_slice(&tar_header(name, mode, data.len(), b'0', ""));
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    };
    for (dir, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("proc/", 0o555),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("root/", 0o700),
    ] {
        tar.extend_from_slice(&tar_header(dir, mode, 0, b'5', ""));
    }
    file(&mut tar, "bin/busybox", 0o755, busybox);
    for applet in APPLETS {
        tar.extend_from_slice(&tar_header(
            &format!("bin/{applet}"),
            0o777,
            0,
            b'2',
            "busybox",
        ));
    }
    for (path, data) in files {
        file(&mut tar, path.trim_start_matches('/'), 0o644, data);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// The image config of a one-layer image whose diff id is `diff_id`.
pub(crate) fn config_json(diff_id: &str) -> String {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string()
}

fn desc_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size})
}

/// The image manifest.
pub(crate) fn manifest_json(config: &Descriptor, layer: &Descriptor) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": desc_json(config),
        "layers": [desc_json(layer)],
    })
    .to_string()
}

const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn process(args: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin", "HOME=/root"],
        "cwd": "/",
        "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true,
    })
}

/// The process spec of an exec'd command.
pub(crate) fn process_json(args: &[&str]) -> String {
    process(args).to_string()
}

/// The OCI runtime spec of a container running `args` in cgroup `cgroups_path`.
pub(crate) fn runtime_spec(
    args: &[String],
    cgroups_path: &str,
    hostname: &str,
    hooks: Option<&serde_json::Value>,
) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": process(&args),
        "root": {"path": "rootfs"},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network"},
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    });
    if let Some(hooks) = hooks {
        spec["hooks"] = hooks.clone();
    }
    spec.to_string()
}

#[test]
fn sha256_known_answers() {
    assert_eq!(
        digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        digest(b"abc"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let long = vec![b'a'; 1_000];
    assert_eq!(
        digest(&long),
        "sha256:41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
}
