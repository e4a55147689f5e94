//! The skip rule shared by every privileged test.

use std::io::Write as _;

use crate::{Error, Result, Unsupported, guest};

/// Applies the skip rule to a probe's result.
///
/// - `Ok(v)` → `Ok(Some(v))`: run the test.
/// - `Err(Error::Unsupported(why))` outside the guest → prints `skipped: <why>` to stderr
///   (bypassing the test harness's capture) and returns `Ok(None)`: the test returns and passes.
/// - `Err(Error::Unsupported(why))` inside the guest → `Err(Error::SkipInGuest(why))`.
/// - any other error → returned unchanged.
pub fn gate<T>(probe: Result<T>) -> Result<Option<T>> {
    match probe {
        Ok(v) => Ok(Some(v)),
        Err(Error::Unsupported(why)) => {
            if guest::current().is_some() {
                return Err(Error::SkipInGuest(why));
            }
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("privileged test");
            // Written to the real stderr: libtest captures only the print macros.
            let _ignored = writeln!(std::io::stderr(), "{test}: skipped: {why}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Applies [`gate`] in a test function: evaluates to the probe's value, returns from the test
/// when it skips, and panics with the full error chain otherwise.
#[macro_export]
macro_rules! require {
    ($probe:expr) => {
        match $crate::gate($probe) {
            ::std::result::Result::Ok(::std::option::Option::Some(v)) => v,
            ::std::result::Result::Ok(::std::option::Option::None) => return,
            ::std::result::Result::Err(e) => ::std::panic!("{}", $crate::error_chain(&e)),
        }
    };
}

/// Probes for root: the privileged tests mount, load BPF programs and change uids.
pub fn require_root() -> Result<()> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(Error::Unsupported(Unsupported::new(format!(
            "needs root, running as euid {euid}"
        ))))
    }
}
