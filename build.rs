//! Build facts for `tether_build_info{version,commit,rust_version}`: the git commit (when
//! built from a git checkout) and the compiler's version. Outside git (a source tarball, a
//! Docker build without `.git`) the commit is "unknown", unless `TETHER_BUILD_COMMIT` is set.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Keeps a label value short and free of characters that would need escaping.
fn label(s: &str) -> String {
    s.chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | ' ' | '(' | ')')
        })
        .take(80)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-env-changed=TETHER_BUILD_COMMIT");
    let commit = std::env::var("TETHER_BUILD_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it names (a commit).
    // `--git-path` resolves both in worktrees too.
    for p in ["HEAD", "packed-refs"] {
        if let Some(path) = run("git", &["rev-parse", "--git-path", p]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    if let Some(r) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = run("git", &["rev-parse", "--git-path", &r]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.89.0 (29483883e 2025-08-04)" -> "1.89.0"
    let rust_version = run(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TETHER_BUILD_COMMIT={}", label(&commit));
    println!(
        "cargo:rustc-env=TETHER_BUILD_RUSTC={}",
        label(&rust_version)
    );
}
