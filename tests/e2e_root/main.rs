//! End-to-end tests that need root: they install the packages on this machine (`dpkg -i`) and
//! mount a small tmpfs for a nearly full backup filesystem.
//!
//! Run `scripts/package.sh` first (`make test` does). Everything else is in the `e2e` target, which
//! runs without root: `make test-noroot`.

mod backup_space;
mod packages;
