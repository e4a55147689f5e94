//! Privileged test support (filled by the test-kernel issue).
