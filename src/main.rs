//! The `raftq` command-line tool.

fn main() {
    println!("raftq {}", env!("CARGO_PKG_VERSION"));
}
