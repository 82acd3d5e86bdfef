//! The `chatbundle` binary: everything lives in the library; this only dispatches.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    chatbundle::cli::main()
}

// glibc's allocator showed up at about a tenth of the CPU under ingest load; mimalloc's
// per-thread free lists make the many short-lived request allocations cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
