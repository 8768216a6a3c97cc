//! The `tether` binary: allocator set-up, then dispatch of the subcommands declared in
//! `tether::cli` (which holds the clap types only).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tether::cli::{CertsArgs, Cli, Command, DomainArgs, VersionArgs, VersionFormat};

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
    // Give freed memory back to the OS 10 ms after it is freed (mimalloc's own default delay)
    // and commit arenas on demand, without transparent huge pages: after a burst of large
    // bodies (issue 13) RSS falls back instead of staying at its peak, and the peak under
    // attack stays near the byte budget (bench/RESULTS.md, "Budgets under attack").
    // Measured for issue 14, round seven: purging at once instead took about one minor page
    // fault per nine requests under HTTP/1.1 load at concurrency 32 and 0.9 µs more CPU per
    // request (4 %, three paired runs); the 10 ms delay takes one fault per 250 requests.
    // The MIMALLOC_* variables still override.
    for (option, env, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 10),
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Serve(args) => tether::app::run_serve(*args),
        Command::Certs(args) => certs(args),
        Command::Review(args) => {
            use std::io::IsTerminal;
            if args.file == "-" && std::io::stdin().is_terminal() {
                // Waiting for a review typed by hand helps nobody: show how to use it.
                let mut cmd = Cli::command();
                cmd.build();
                if let Some(sub) = cmd.find_subcommand_mut("review") {
                    eprintln!("{}", sub.render_help());
                }
                eprintln!(
                    "\ntether review: no input: pass -f FILE or pipe an AdmissionReview into it"
                );
                return ExitCode::from(2);
            }
            tether::offline::run_review(args)
        }
        Command::Check(mut args) => {
            if let Some(m) = matches.subcommand_matches("check") {
                args.explicit = explicit_ids(m);
            }
            tether::check::run_check(args)
        }
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
        Command::Version(args) => version(args),
        Command::Completion(args) => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "tether", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
            ExitCode::SUCCESS
        }
    }
}

/// Ids of the arguments given on the command line or in the environment (not defaults).
fn explicit_ids(m: &clap::ArgMatches) -> std::collections::BTreeSet<String> {
    use clap::parser::ValueSource;
    m.ids()
        .filter(|id| {
            matches!(
                m.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| id.as_str().to_string())
        .collect()
}

fn version(args: VersionArgs) -> ExitCode {
    use tether::cli::{BUILD_DATE, GIT_COMMIT, VERSION};
    match args.output {
        VersionFormat::Text => {
            println!("tether {VERSION}\ngit commit: {GIT_COMMIT}\nbuild date: {BUILD_DATE}")
        }
        VersionFormat::Json => println!(
            "{}",
            serde_json::json!({"version": VERSION, "gitCommit": GIT_COMMIT, "buildDate": BUILD_DATE})
        ),
    }
    ExitCode::SUCCESS
}

fn domain(args: DomainArgs) -> ExitCode {
    use tether::naming;
    let root = match naming::DomainRoot::parse(args.root.trim()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether domain: --domain-root: {e}");
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
    // The webhook's rule (spec.tenantId / spec.extensionId must not give a reserved part).
    let reserved: Vec<String> = args
        .reserved_names
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut denied = false;
    for (flag, id) in [("--tenant", &args.tenant), ("--extension", &args.extension)] {
        let part = naming::domain_part(id).part;
        if reserved.contains(&part) {
            eprintln!(
                "tether domain: {flag} {id:?} gives the domain part {part:?}, which is reserved (--reserved-names, env TETHER_RESERVED_NAMES): the webhook would deny this AppDomain; use another id"
            );
            denied = true;
        }
    }
    match naming::check_domain(&d) {
        Ok(c) => {
            if let Some(w) = c.warning() {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => {
            eprintln!("tether domain: {e}");
            denied = true;
        }
    }
    if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn certs(args: CertsArgs) -> ExitCode {
    if !args.force {
        let existing: Vec<String> = ["ca.crt", "tls.crt", "tls.key"]
            .iter()
            .map(|f| args.out.join(f))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            eprintln!(
                "tether certs: {} already exist{}; a new CA would not be trusted by the caBundle in use. Pass --force to overwrite, or choose another --out",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            );
            return ExitCode::from(2);
        }
    }
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
