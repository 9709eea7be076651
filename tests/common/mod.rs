//! The command's and the whole system's tests: what every test shares
//! (`oidc-logout-test-support`), and running the `oidc-logout` binary as an operator would.

#![allow(dead_code, unused_imports)]

pub use oidc_logout_test_support::*;

use std::process::{Command, Stdio};

// The `oidc-logout` binary, run as an operator would.

pub const BIN: &str = env!("CARGO_BIN_EXE_oidc-logout");

/// The binary the tests run: this build's, or `TEST_RECEIVER_BIN` (another commit's build, to
/// check that a test fails where it should).
pub fn bin() -> String {
    std::env::var("TEST_RECEIVER_BIN").unwrap_or_else(|_| BIN.to_owned())
}

pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("OIDC_LOGOUT_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied()).env("RUST_LOG", "info");
    cmd
}

/// Run to completion (it must fail) and return its stderr.
pub fn failure(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = command(args, env).output().expect("run oidc-logout");
    assert!(
        !output.status.success(),
        "expected a failure, got {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Start the binary with `args` and `env`; its output lines are readable, it is killed on drop.
pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = command(args, env);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    Proc::spawn("oidc-logout", cmd)
}

/// The receiver URL from the "listening on" line.
pub fn endpoint(running: &Proc) -> String {
    let line = running.wait_for("listening on ");
    line.split("listening on ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// An example's binary. `cargo test` builds examples, but not when it runs only some test
/// targets, so build it here too (a no-op when it is up to date) rather than run a stale binary.
pub fn example(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap_or_else(|e| panic!("cargo build --example {name}: {e}"));
        assert!(status.success(), "the example {name} does not build");
        built.push(name.to_owned());
    }
    let exe = std::env::current_exe().expect("test exe");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = debug.join("examples").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}
