//! The `casebook` command: serve, check, run and demo.

fn main() -> std::process::ExitCode {
    casebook::cli::main()
}
