//! The `autolora` command.

mod atomic;
mod config;
mod heatmap;

fn main() {}
