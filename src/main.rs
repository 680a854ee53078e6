//! The `raftq` command-line tool: server, local dev cluster, producer,
//! worker, operator and benchmark commands.

mod cli;

// The server allocates many small objects per request (decoded jobs, frames,
// outcomes); mimalloc handles that pattern far better than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
