//! Bakes libtorch's folder into this crate's binaries (rpath), so they start with no
//! LD_LIBRARY_PATH. torch-sys, a direct dependency, passes the folder as DEP_TCH_LIBTORCH_LIB;
//! autolora-core's own build script cannot do this for its dependents (cargo applies
//! `rustc-link-arg` to the emitting package's targets only).
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys is a direct dependency");
    println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
}
