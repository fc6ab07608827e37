//! The `skiff` binary: everything lives in the library; this only reports errors and
//! picks the allocator.

/// mimalloc instead of the C library's malloc: under the server's load glibc spent a
/// third of the CPU in malloc, free and its arena locks (see docs/adr/0006-scale.md).
/// Built from source with the C compiler SQLite needs anyway; finds the page size at
/// run time (16 KiB-page ARM kernels). Built without its transparent-huge-page advice
/// (`no_thp`): huge pages half used put hundreds of MiB on the server's RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Started through a link named after a built-in CNI plugin: be that plugin.
    if let Some(code) = skiff::network::plugins::run_if_invoked_as_plugin() {
        return code;
    }
    match skiff::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
