//! Compiles etcd's v3 gRPC API (KV, Watch, Maintenance; rpc.proto imports kv.proto)
//! with protox, so a build needs nothing but the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The whole folder: a proto imported by another must trigger a rebuild too.
    println!("cargo:rerun-if-changed=etcd/proto");
    let fds = protox::compile(["rpc.proto"], ["etcd/proto"])?;
    // Only the client side: nothing in rind serves these interfaces.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
