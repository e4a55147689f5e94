# Shared install steps (sourced by scripts/test, scripts/demo and .ci/run). Idempotent: a machine
# that has everything installs nothing.

apt_install() {
  # apt_install PKG... : installs the Debian packages that are missing.
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_host_prereqs() {
  command -v cargo >/dev/null || { echo "error: cargo not found; install Rust 1.95 first" >&2; exit 1; }
  # rustfmt and clippy ship with the machine's toolchain; nothing from rustup is fetched.
  # tests/privileged is a workspace member: its build.rs needs clang (eBPF) and a static libc.
  ensure_bpf_build_prereqs
  ensure_runtime_prereqs
  ensure_apparmor_prereqs
}

ensure_apparmor_prereqs() {
  # armor-enforce-apparmor: every generated profile is compiled by the real apparmor_parser
  # (`-Q -K -S`, no kernel AppArmor needed) in the normal test run.
  apt_install apparmor
}

ensure_runtime_prereqs() {
  # armor-runtime tests: protoc builds containerd-client (the tests drive a private containerd
  # through its whole API; the library itself compiles its own protos with protox, no protoc);
  # containerd + runc + busybox-static run the real-container tests (private containerd per test).
  apt_install protobuf-compiler containerd runc busybox-static
}

ensure_bpf_build_prereqs() {
  # clang compiles the eBPF C programs of tests/privileged (and armor-ebpf, armor-enforce-bpflsm and benches); gcc builds the
  # static helper binary. libbpf-dev provides bpf_helpers.h / bpf_core_read.h.
  apt_install clang llvm libbpf-dev gcc libc6-dev
}

ensure_vm_prereqs() {
  # What scripts/vm-test needs on the host to build the guest and the privileged tests.
  ensure_host_prereqs
  ensure_bpf_build_prereqs
  apt_install qemu-system-x86 busybox-static cpio kmod python3 apparmor secilc
}
