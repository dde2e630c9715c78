fn main() -> std::process::ExitCode {
    vitalsd::cli::main()
}
