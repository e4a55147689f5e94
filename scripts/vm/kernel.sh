# Guest kernel and initramfs for scripts/vm-test (sourced). Everything lands in $VM_CACHE
# (.vm-cache/ by default) and is reused: a cached run costs a few apt-cache look-ups.
#
# vm_prepare_kernel sets VM_KVER, VM_VMLINUX and VM_MODULES (a lib/modules tree holding only the
# modules the guest loads, with their dependencies).
# vm_prepare_initramfs sets VM_INITRAMFS.

VM_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Modules the initramfs loads (with their dependencies): virtio transport, 9p, overlay, serial ports.
VM_GUEST_MODULES=(virtio_pci 9pnet_virtio 9p overlay virtio_console)

vm_log() { printf 'vm-test: %s\n' "$*" >&2; }
vm_die() { printf 'vm-test: error: %s\n' "$*" >&2; exit 2; }

vm_resolve_kernel_package() {
  # Prints "PACKAGE VERSION" of the kernel image linux-image-amd64 depends on today.
  local dep="" ver=""
  dep="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" { print $2; exit }')"
  if [ -z "$dep" ]; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >&2
    dep="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" { print $2; exit }')"
  fi
  [ -n "$dep" ] || return 1
  ver="$(apt-cache policy "$dep" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')"
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  printf '%s %s\n' "$dep" "$ver"
}

vm_prepare_kernel() {
  local pkg="" ver="" resolved="" dir=""
  if resolved="$(vm_resolve_kernel_package)"; then
    read -r pkg ver <<<"$resolved"
    dir="$VM_CACHE/kernel/${pkg}_${ver}"
  else
    # No package lists (offline): fall back to the newest kernel already in the cache.
    dir="$(ls -d "$VM_CACHE"/kernel/*/ 2>/dev/null | sort -V | tail -n 1)"
    dir="${dir%/}"
    [ -n "$dir" ] && [ -f "$dir/ready" ] || vm_die "cannot resolve linux-image-amd64's kernel package (apt-get update failed?) and nothing is cached"
    vm_log "warning: cannot resolve linux-image-amd64; using the cached $(basename "$dir")"
  fi
  if [ ! -f "$dir/ready" ]; then
    local t0=$SECONDS tmp="$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp/deb" "$tmp/x" "$tmp/modules"
    vm_log "downloading $pkg $ver"
    (cd "$tmp/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) \
      || vm_die "apt-get download $pkg=$ver failed"
    dpkg-deb -x "$tmp"/deb/*.deb "$tmp/x"
    local kver=""
    kver="$(ls "$tmp/x/lib/modules")"
    [ -n "$kver" ] && [ -f "$tmp/x/boot/vmlinuz-$kver" ] || vm_die "unexpected layout in $pkg"
    python3 "$VM_SCRIPT_DIR/extract-vmlinux.py" "$tmp/x/boot/vmlinuz-$kver" "$tmp/vmlinux"
    cp "$tmp/x/boot/config-$kver" "$tmp/config"
    depmod -b "$tmp/x" "$kver"
    local m ko
    for m in "${VM_GUEST_MODULES[@]}"; do
      # Built-in modules print "builtin NAME"; only the .ko files need copying.
      modprobe -d "$tmp/x" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' |
        while read -r ko; do
          local rel="${ko#"$tmp/x/"}"
          mkdir -p "$tmp/modules/$(dirname "$rel")"
          cp "$ko" "$tmp/modules/$rel"
        done
    done
    cp "$tmp/x/lib/modules/$kver"/modules.builtin* "$tmp/x/lib/modules/$kver/modules.order" \
      "$tmp/modules/lib/modules/$kver/"
    depmod -b "$tmp/modules" "$kver"
    printf '%s\n' "$kver" > "$tmp/kver"
    rm -rf "$tmp/x" "$tmp/deb"
    touch "$tmp/ready"
    rm -rf "$dir" && mv "$tmp" "$dir"
    vm_log "kernel $kver prepared in $((SECONDS - t0)) s ($dir)"
  fi
  VM_KDIR="$dir"
  VM_KVER="$(cat "$dir/kver")"
  VM_VMLINUX="$dir/vmlinux"
  VM_MODULES="$dir/modules"
}

vm_prepare_initramfs() {
  # The image depends on busybox, the init scripts and the modules: rebuild when any changes.
  local busybox="" key="" out=""
  # busybox-static (a prerequisite) conflicts with the dynamic busybox package, so this is static.
  busybox="$(command -v busybox)" || vm_die "busybox not found (apt-get install busybox-static)"
  key="$( (sha256sum "$busybox" "$VM_SCRIPT_DIR/init" "$VM_SCRIPT_DIR/stage2";
           find "$VM_MODULES" -type f -printf '%P %s\n' | sort) | sha256sum | cut -c1-16)"
  out="$VM_KDIR/initramfs-$key.cpio"
  if [ ! -f "$out" ]; then
    local root="$VM_KDIR/initramfs.tmp"
    rm -rf "$root" && mkdir -p "$root/bin"
    cp "$busybox" "$root/bin/busybox"
    cp "$VM_SCRIPT_DIR/init" "$root/init" && chmod 0755 "$root/init"
    cp "$VM_SCRIPT_DIR/stage2" "$root/stage2"
    cp -a "$VM_MODULES/lib" "$root/lib"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet > "$out.tmp")
    mv "$out.tmp" "$out"
    rm -rf "$root"
    # Older images go after a day: a concurrent run may still be booting one.
    find "$VM_KDIR" -maxdepth 1 -name 'initramfs-*.cpio' ! -name "$(basename "$out")" -mmin +1440 -delete
  fi
  VM_INITRAMFS="$out"
}
