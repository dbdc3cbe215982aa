//! End-to-end tests that need root: they install the packages on this machine (`dpkg -i`).
//!
//! Run `scripts/package.sh` first (`make test` does). Everything else is in the `e2e` target, which
//! runs without root: `make test-noroot`.

mod packages;
