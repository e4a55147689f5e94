//! Fuzzing the decoding of the event source's ring-buffer records ([`armor_testing::fuzz`]):
//! a record of any length and content becomes an event (and its translation) or nothing, never
//! a panic. Seeds: zeroed records of the layout's size, one per event kind (the kind is the
//! 32-bit field at offset 16 of `armor_ebpf::layout`).

use armor_ebpf::layout::{RawEvent, SIZE, kind};
use armor_ebpf::{Event, ProcessTree, Translator};

/// The offset of the record's kind (`layout.rs`, `KIND`).
const KIND_AT: usize = 16;

fn seeds() -> Vec<Vec<u8>> {
    [
        kind::EXEC,
        kind::FORK,
        kind::EXIT,
        kind::OPEN,
        kind::OPENAT,
        kind::OPENAT2,
        kind::SOCKET,
        kind::CONNECT,
        kind::BIND,
        kind::LISTEN,
    ]
    .iter()
    .map(|k| {
        let mut b = vec![0u8; SIZE];
        if let Some(s) = b.get_mut(KIND_AT..KIND_AT + 4) {
            s.copy_from_slice(&k.to_ne_bytes());
        }
        b
    })
    .collect()
}

#[test]
fn fuzz_event_records_never_panic() {
    let tree = ProcessTree::default();
    armor_testing::fuzz::run(
        "event",
        &seeds(),
        &[b"/", b"\0", b"..", b"\xff\xff\xff\xff"],
        |bytes| {
            let Ok(raw) = RawEvent::decode(bytes) else {
                return;
            };
            let mut resolve = |_pid: u32, _dirfd: i32, p: &str| p.to_owned();
            let mut exe = |_raw: &RawEvent, f: &str| f.to_owned();
            if let Some(ev) = Event::from_raw(&raw, &mut resolve, &mut exe) {
                let _ = Translator::default().translate(&ev, &tree);
            }
        },
    );
}
