//! The `autolora` command.
fn main() {}
