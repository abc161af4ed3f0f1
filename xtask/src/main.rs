//! `cargo run -p xtask -- <task> [args]`: project tasks behind `make` targets.

mod dist;
mod fork;
mod istio;
mod new_filter;
mod oci;
mod push_oci;
mod schemas;
mod sha256;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "usage: xtask <dist|fork|istio|new-filter|push-oci|schemas> [args]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "dist" => dist::run(rest),
        "fork" => fork::run(rest),
        "istio" => istio::run(rest),
        "new-filter" => new_filter::run(rest),
        "push-oci" => push_oci::run(rest),
        "schemas" => schemas::run(rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
