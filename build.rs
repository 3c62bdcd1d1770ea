//! Compiles the gRPC interfaces we speak (etcd v3, CRI v1) with protox, so a build
//! needs nothing but the Rust toolchain.

fn compile(protos: &[&str], include: &str) -> Result<(), Box<dyn std::error::Error>> {
    // The whole folder: a proto imported by another must trigger a rebuild too.
    println!("cargo:rerun-if-changed={include}");
    let fds = protox::compile(protos, [include])?;
    tonic_prost_build::configure()
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // etcd's v3 API: KV, Watch, Maintenance; rpc.proto imports kv.proto (mvccpb).
    compile(&["rpc.proto"], "src/store/etcd/proto")?;
    // The kubelet's Container Runtime Interface v1.
    compile(&["api.proto"], "src/kubelet/cri/proto")?;
    Ok(())
}
