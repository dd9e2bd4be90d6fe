//! `kubectl kaizen`: the kubectl plugin (see `kaizen::plugin`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = kaizen::plugin::Cli::parse();
    kaizen::plugin::run(cli).await
}
