//! Compiles `proto/sup/v1` with protox (a pure-Rust protoc) and writes the descriptor set that
//! gRPC reflection serves. No system `protoc` is involved.
use std::{env, path::PathBuf};

const FILES: &[&str] = &[
    "sup/v1/site.proto",
    "sup/v1/state.proto",
    "sup/v1/events.proto",
    "sup/v1/commands.proto",
    "sup/v1/coordinator.proto",
    "sup/v1/scheduler.proto",
    "sup/v1/health.proto",
    "sup/v1/agent.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(FILES)?;

    // compile_fds never runs protoc, so prost-build's file_descriptor_set_path() is not honoured:
    // the descriptor set for reflection is written here.
    std::fs::write(
        out.join("sup_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
