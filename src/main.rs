//! The `tether` binary: allocator set-up, then dispatch of the subcommands declared in
//! `tether::cli` (which holds the clap types only).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tether::cli::{CertsArgs, Cli, Command, DomainArgs, VersionArgs, VersionFormat};

// mimalloc (cargo feature `mimalloc`, on by default): the admission path allocates a small
// object per JSON string; bench/RESULTS.md compares it with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc, called through its plain entry points wherever the alignment asked for is one
/// that every mimalloc block already has.
///
/// The `mimalloc` crate's `MiMalloc` sends every allocation to `mi_malloc_aligned`. mimalloc
/// v3 answers that from the size's own bin only while that bin's page has a free block at
/// hand; otherwise, unless the rounded size is a power of two, it over-allocates from the
/// next bin up, and since nothing then refills the first bin's page, every later allocation
/// of that size takes the same slow path (a 48-byte buffer, a larger block, every time).
/// Issue 14, round eight measured it: 56 allocations per review cost 5.5 k instructions.
/// mimalloc block sizes are whole machine words and its pages start word-aligned, so an
/// alignment up to a word needs nothing but `mi_malloc`; larger ones keep the aligned calls.
#[cfg(feature = "mimalloc")]
struct Mimalloc;

#[cfg(feature = "mimalloc")]
const WORD: usize = std::mem::size_of::<usize>();

#[cfg(feature = "mimalloc")]
// SAFETY: every method forwards to the mimalloc function for the same job, which returns
// null on failure and memory aligned to at least `layout.align()`: a word for the plain
// calls (see above), the alignment passed for the aligned ones. `mi_free` and the realloc
// calls accept any pointer either family returned.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        if layout.align() <= WORD {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        if layout.align() <= WORD {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        if layout.align() <= WORD {
            mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

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

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::Mimalloc;

    /// Every size class a request meets, at every alignment up to a page: each block is
    /// aligned as asked, writable over its whole size, zeroed when asked, and keeps its bytes
    /// through a realloc that grows it and one that shrinks it.
    #[test]
    fn mimalloc_blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let sizes = (1..=1024).chain([1500, 4096, 5000, 70_000, 1 << 21]);
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in sizes.clone() {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Several blocks of one size, so a bin's later blocks are checked too.
                let blocks: Vec<*mut u8> = (0..4)
                    .map(|i| {
                        // SAFETY: the layout has a non-zero size.
                        let p = unsafe {
                            if i % 2 == 0 {
                                Mimalloc.alloc(layout)
                            } else {
                                Mimalloc.alloc_zeroed(layout)
                            }
                        };
                        assert!(!p.is_null(), "size {size} align {align}: null");
                        assert_eq!(p as usize % align, 0, "size {size} align {align}: {p:p}");
                        if i % 2 == 1 {
                            // SAFETY: p points at `size` bytes just allocated.
                            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
                            assert!(bytes.iter().all(|b| *b == 0), "size {size}: not zeroed");
                        }
                        // SAFETY: as above; the block is ours to write.
                        unsafe { std::ptr::write_bytes(p, (size % 251) as u8, size) };
                        p
                    })
                    .collect();
                for p in blocks {
                    // SAFETY: p came from `alloc` with `layout`, and realloc's contract is kept:
                    // each new size is non-zero and the layout passed is the block's current one.
                    unsafe {
                        let grown = Mimalloc.realloc(p, layout, size * 2 + 8);
                        assert_eq!(grown as usize % align, 0, "grown size {size} align {align}");
                        let kept = std::slice::from_raw_parts(grown, size);
                        assert!(
                            kept.iter().all(|b| *b == (size % 251) as u8),
                            "grown {size}"
                        );
                        let grown_layout = Layout::from_size_align(size * 2 + 8, align).unwrap();
                        let half = size.div_ceil(2);
                        let shrunk = Mimalloc.realloc(grown, grown_layout, half);
                        assert_eq!(
                            shrunk as usize % align,
                            0,
                            "shrunk size {size} align {align}"
                        );
                        let kept = std::slice::from_raw_parts(shrunk, half);
                        assert!(
                            kept.iter().all(|b| *b == (size % 251) as u8),
                            "shrunk {size}"
                        );
                        Mimalloc.dealloc(shrunk, Layout::from_size_align(half, align).unwrap());
                    }
                }
            }
        }
    }
}
