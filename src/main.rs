//! The `ferry` binary: parse the command line, run, print the error chain
//! and pick the exit code. Everything else lives in the library.

// The daemon's futures nest deep (a pass, a receive round, a load).
#![recursion_limit = "256"]

use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(ferry::cli::execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            ferry::cli::report_error(&e);
            e.kind().exit_code()
        }
    };
    std::process::exit(code);
}
