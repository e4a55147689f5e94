//! The alert reader: ring-buffer records to [`EnforcerAlert`]s for the sink.

use super::*;

pub(super) fn nul_text(b: &[u8], len: u16) -> String {
    let b = b.get(..usize::from(len)).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

/// Turns a kernel alert into an [`EnforcerAlert`] (policy fields come from the rule id).
pub fn to_alert(raw: &AlertRaw) -> EnforcerAlert {
    let rule = (raw.rule != abi::RULE_POSTURE).then_some(raw.rule);
    let operation = match raw.category {
        abi::CAT_PROCESS => Category::Process,
        abi::CAT_FILE => Category::File,
        abi::CAT_NETWORK => Category::Network,
        _ => Category::Capabilities,
    };
    let resource = match raw.category {
        abi::CAT_FILE if raw.detail & abi::DETAIL_MEMORY != 0 => {
            if raw.detail & abi::DETAIL_MPROTECT != 0 {
                "anonymous memory (mprotect PROT_EXEC)".to_owned()
            } else {
                "anonymous memory (mmap PROT_EXEC)".to_owned()
            }
        }
        abi::CAT_PROCESS if raw.detail & abi::DETAIL_ARGS_CHANGED != 0 => {
            "arguments changed during the exec (killed)".to_owned()
        }
        abi::CAT_PROCESS | abi::CAT_FILE => nul_text(&raw.path, raw.path_len),
        abi::CAT_NETWORK => format!(
            "family={} type={} protocol={}",
            raw.detail >> 16,
            (raw.detail >> 8) & 0xff,
            raw.detail & 0xff
        ),
        _ => armor_core::event::caps::name(u8::try_from(raw.detail).unwrap_or(u8::MAX))
            .unwrap_or_else(|| raw.detail.to_string()),
    };
    let source = (raw.source_len > 0).then(|| nul_text(&raw.source, raw.source_len));
    let a = if raw.action == abi::ACTION_BLOCK {
        EnforcerAlert::blocked(NAME, rule, operation, resource)
    } else {
        EnforcerAlert::audited(NAME, rule, operation, resource)
    };
    let wl = if raw.cgroup == 0 {
        WorkloadKey::new("host")
    } else {
        WorkloadKey::new(format!("cgroup {}", raw.cgroup)).with_cgroup(raw.cgroup)
    };
    a.with_workload(wl).with_process(raw.pid, raw.uid, source)
}

pub(super) fn spawn_reader(
    mut ring: RingBuf<MapData>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    read: Arc<std::sync::atomic::AtomicU64>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let mut any = false;
            while let Some(item) = ring.next() {
                any = true;
                read.fetch_add(1, Ordering::Relaxed);
                let Some(raw) = AlertRaw::from_bytes(&item) else {
                    continue;
                };
                sink.deliver(to_alert(&raw));
            }
            if !any {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
}
