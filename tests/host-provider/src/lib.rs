//! Nothing but a home for `tests/host_provider.rs`: a test binary that links both of rustls's
//! providers (this package's dev-dependency turns on `aws_lc_rs`), apart from the crate's own
//! tests, so that no other build compiles aws-lc-rs.
