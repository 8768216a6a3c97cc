//! The `tether` binary: allocator set-up, then dispatch of the subcommands declared in
//! `tether::cli` (which holds the clap types only).

use std::process::ExitCode;

use clap::Parser;
use tether::cli::{CertsArgs, Cli, Command, DomainArgs};

// mimalloc (cargo feature `mimalloc`, on by default): the admission path allocates a small
// object per JSON string; bench/RESULTS.md compares it with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    configure_mimalloc();
    run()
}

#[cfg(feature = "mimalloc")]
fn configure_mimalloc() {
    /// mimalloc (v3) option numbers, from its `mimalloc.h` `mi_option_e`.
    const MI_OPTION_ARENA_EAGER_COMMIT: std::os::raw::c_int = 4;
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    const MI_OPTION_ALLOW_THP: std::os::raw::c_int = 46;
    // Give freed memory back to the OS at once and commit arenas on demand, without
    // transparent huge pages: after a burst of large bodies (issue 13) RSS falls back instead
    // of staying at its peak, and the peak under attack stays near the byte budget
    // (bench/RESULTS.md, "Budgets under attack"). The MIMALLOC_* variables still override.
    for (option, env, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
        (MI_OPTION_ALLOW_THP, "MIMALLOC_ALLOW_THP", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mi_option_set only stores an integer in mimalloc's option table.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// Parses the command line and runs the subcommand.
fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => tether::app::run_serve(*args),
        Command::Certs(args) => certs(args),
        Command::Review(args) => tether::offline::run_review(args),
        Command::Check(args) => tether::offline::run_check(args),
        Command::Crds => match tether::crd::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tether crds: {e}");
                ExitCode::from(1)
            }
        },
        Command::Domain(args) => domain(args),
    }
}

fn domain(args: DomainArgs) -> ExitCode {
    use tether::naming;
    let root = match naming::DomainRoot::parse(args.root.trim()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether domain: --root: {e}");
            return ExitCode::from(2);
        }
    };
    for (flag, id) in [("--tenant", &args.tenant), ("--extension", &args.extension)] {
        if id.trim().is_empty() {
            eprintln!("tether domain: {flag} must not be empty");
            return ExitCode::from(2);
        }
    }
    let d = naming::app_domain(&args.tenant, &args.extension, &root);
    println!("{d}");
    if args.verbose {
        println!("tenant:    {}", naming::domain_part(&args.tenant));
        println!("extension: {}", naming::domain_part(&args.extension));
        println!(
            "if {d} is held by another (tenant, extension) pair: {}",
            naming::disambiguated_app_domain(&args.tenant, &args.extension, &root)
        );
    }
    match naming::check_domain(&d) {
        Ok(c) => {
            if let Some(w) = c.warning() {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether domain: {e}");
            ExitCode::from(1)
        }
    }
}

fn certs(args: CertsArgs) -> ExitCode {
    let result = tether::certs::generate(&args.dns, args.days)
        .and_then(|g| tether::certs::write(&args.out, &g).map(|_| g));
    match result {
        Ok(g) => {
            println!(
                "wrote {0}/ca.crt, {0}/tls.crt, {0}/tls.key (serving names: {1})",
                args.out.display(),
                args.dns.join(", ")
            );
            println!("caBundle (base64 of ca.crt, for the webhook configurations):");
            println!("{}", g.ca_bundle());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether certs: {e}");
            ExitCode::from(2)
        }
    }
}
