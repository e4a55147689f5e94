//! Fuzzing the decoding of the kernel programs' alert records ([`armor_testing::fuzz`]): a
//! record of any length and content becomes an alert or nothing, never a panic (the lengths it
//! holds are the kernel's word, never trusted). Seeds: records built from the layout, one per
//! category and action, with edge lengths.

use armor_enforce_bpflsm::abi::AlertRaw;
use armor_enforce_bpflsm::enforcer::to_alert;

fn seeds() -> Vec<Vec<u8>> {
    let size = size_of::<AlertRaw>();
    let mut out = Vec::new();
    for (category, action, len) in [(0u8, 0u8, 0u16), (1, 1, 11), (2, 2, 4096), (3, 1, u16::MAX)] {
        let mut b = vec![0u8; size];
        let set = |b: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            if let Some(s) = b.get_mut(at..at + bytes.len()) {
                s.copy_from_slice(bytes);
            }
        };
        set(
            &mut b,
            std::mem::offset_of!(AlertRaw, category),
            &[category],
        );
        set(&mut b, std::mem::offset_of!(AlertRaw, action), &[action]);
        set(
            &mut b,
            std::mem::offset_of!(AlertRaw, path_len),
            &len.to_ne_bytes(),
        );
        set(
            &mut b,
            std::mem::offset_of!(AlertRaw, source_len),
            &len.to_ne_bytes(),
        );
        set(&mut b, std::mem::offset_of!(AlertRaw, path), b"/etc/shadow");
        out.push(b);
    }
    out
}

#[test]
fn fuzz_alert_records_never_panic() {
    armor_testing::fuzz::run("alert", &seeds(), &[b"\xff\xff", b"\0\0\0\0"], |bytes| {
        if let Some(raw) = AlertRaw::from_bytes(bytes) {
            let a = to_alert(&raw);
            let _ = format!("{a:?}");
        }
    });
}
