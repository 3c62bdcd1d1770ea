//! Compiles the gRPC interfaces we speak (etcd v3, CRI v1) and the Kubernetes wire
//! schema of protobuf request bodies with protox, so a build needs nothing but the
//! Rust toolchain.

fn compile(protos: &[&str], include: &str) -> Result<(), Box<dyn std::error::Error>> {
    // The whole folder: a proto imported by another must trigger a rebuild too.
    println!("cargo:rerun-if-changed={include}");
    let fds = protox::compile(protos, [include])?;
    tonic_prost_build::configure()
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// The Kubernetes object schema is decoded at run time (prost-reflect), not through
/// generated types: only its descriptor set is written, for `include_bytes!`.
fn kubernetes_descriptors(include: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={include}");
    let groups = [
        "k8s.io/api/core/v1/generated.proto",
        "k8s.io/api/apps/v1/generated.proto",
        "k8s.io/api/batch/v1/generated.proto",
        "k8s.io/api/rbac/v1/generated.proto",
        "k8s.io/api/policy/v1/generated.proto",
        "k8s.io/api/networking/v1/generated.proto",
        "k8s.io/api/scheduling/v1/generated.proto",
        "k8s.io/api/authorization/v1/generated.proto",
        "k8s.io/api/authentication/v1/generated.proto",
        "k8s.io/api/autoscaling/v1/generated.proto",
        "k8s.io/api/autoscaling/v2/generated.proto",
        "k8s.io/apimachinery/pkg/runtime/generated.proto",
    ];
    let mut compiler = protox::Compiler::new([include])?;
    // Imports (meta/v1, resource, intstr) are part of the pool; comments are not.
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(groups)?;
    let out = std::path::Path::new(out).join("kubernetes_descriptors.bin");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // etcd's v3 API: KV, Watch, Maintenance; rpc.proto imports kv.proto (mvccpb).
    compile(&["rpc.proto"], "src/store/etcd/proto")?;
    // The kubelet's Container Runtime Interface v1.
    compile(&["api.proto"], "src/kubelet/cri/proto")?;
    // Kubernetes objects in protobuf request bodies (kubectl's typed clients).
    let out = std::env::var("OUT_DIR")?;
    kubernetes_descriptors("src/api/protobuf/proto", &out)?;
    Ok(())
}
