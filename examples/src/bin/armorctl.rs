//! armorctl
fn main() {}
