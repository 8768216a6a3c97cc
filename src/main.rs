// mimalloc: the admission path allocates a small object per JSON string; glibc malloc/free
// were ~20 % of server CPU under load (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc (v3) option numbers, from its `mimalloc.h` `mi_option_e`.
const MI_OPTION_ARENA_EAGER_COMMIT: std::os::raw::c_int = 4;
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
const MI_OPTION_ALLOW_THP: std::os::raw::c_int = 46;

fn main() -> std::process::ExitCode {
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
    tether::cli::main()
}
