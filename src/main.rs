//! The `chatbundle` binary: everything lives in the library; this only dispatches.

fn main() -> std::process::ExitCode {
    chatbundle::cli::main()
}
