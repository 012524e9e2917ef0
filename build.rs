//! Passes the target triple to the crate, so `environment.arch` is the triple the service was
//! built for (e.g. `armv7-unknown-linux-gnueabihf`), not one rebuilt from `cfg!` values.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=ELECTRIC_TELEMETRY_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
