//! The `raftq` command-line tool: server, local dev cluster, producer,
//! worker, operator and benchmark commands.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
