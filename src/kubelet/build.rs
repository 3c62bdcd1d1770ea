//! Compiles the Container Runtime Interface v1 (kubernetes/cri-api's api.proto) and
//! the gRPC health protocol (for `grpc` probes) with protox, so a build needs nothing
//! but the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=cri/proto");
    println!("cargo:rerun-if-changed=grpc_health");
    let fds = protox::compile(["api.proto"], ["cri/proto"])?;
    // Only the client side: nothing in rind serves these interfaces.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    let health = protox::compile(["health.proto"], ["grpc_health"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(health)?;
    Ok(())
}
