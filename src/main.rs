// mimalloc: the admission path allocates a small object per JSON string; glibc malloc/free
// were ~20 % of server CPU under load (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tether::cli::main()
}
