//! Writes the descriptor set of the Kubernetes wire schema for protobuf request bodies
//! (kubectl's typed clients send them), compiled with protox so a build needs nothing
//! but the Rust toolchain. Objects are decoded at run time with prost-reflect, not
//! through generated types: only the descriptors are written, for `include_bytes!`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = "protobuf/proto";
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
    let out = std::path::Path::new(&std::env::var("OUT_DIR")?).join("kubernetes_descriptors.bin");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}
