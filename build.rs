//! Compiles the gRPC interfaces we speak (etcd v3, CRI v1) with protox, so a build
//! needs nothing but the Rust toolchain.

use std::path::Path;

fn compile(protos: &[&str], include: &str) -> Result<(), Box<dyn std::error::Error>> {
    for proto in protos {
        println!("cargo:rerun-if-changed={include}/{proto}");
    }
    let fds = protox::compile(protos, [include])?;
    tonic_prost_build::configure()
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // etcd's v3 API: KV, Watch, Maintenance (src/store/etcd/proto).
    if Path::new("src/store/etcd/proto/rpc.proto").exists() {
        // rpc.proto imports kv.proto (etcd's mvccpb package).
        println!("cargo:rerun-if-changed=src/store/etcd/proto/kv.proto");
        compile(&["rpc.proto"], "src/store/etcd/proto")?;
    }
    // The kubelet's Container Runtime Interface v1 (src/kubelet/cri/proto).
    if Path::new("src/kubelet/cri/proto/api.proto").exists() {
        compile(&["api.proto"], "src/kubelet/cri/proto")?;
    }
    Ok(())
}
