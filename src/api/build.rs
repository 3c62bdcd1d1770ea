//! Writes the descriptor set of the Kubernetes wire schema for protobuf request bodies
//! (kubectl's typed clients send them), compiled with protox so a build needs nothing
//! but the Rust toolchain. Objects are decoded at run time with prost-reflect, not
//! through generated types: only the descriptors are written, for `include_bytes!`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = "protobuf/proto";
    println!("cargo:rerun-if-changed={include}");
    // Upstream's generated.proto files, whole (k8s.io/api and k8s.io/apimachinery
    // v0.37.0-beta.0): every built-in group this server serves, so each of its kinds,
    // statuses included, decodes.
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
        "k8s.io/api/certificates/v1/generated.proto",
        "k8s.io/api/coordination/v1/generated.proto",
        "k8s.io/api/discovery/v1/generated.proto",
        "k8s.io/api/events/v1/generated.proto",
        "k8s.io/api/node/v1/generated.proto",
        "k8s.io/api/storage/v1/generated.proto",
        "k8s.io/api/admissionregistration/v1/generated.proto",
        "k8s.io/api/flowcontrol/v1/generated.proto",
        "k8s.io/api/resource/v1/generated.proto",
        // kube-aggregator's, from its master of July 2026 (no v0.37 beta tag there).
        "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1/generated.proto",
        "k8s.io/apimachinery/pkg/runtime/generated.proto",
    ];
    let mut compiler = protox::Compiler::new([include])?;
    // Imports (meta/v1, resource, intstr, runtime/schema) are part of the pool; comments are not.
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(groups)?;
    let out = std::path::Path::new(&std::env::var("OUT_DIR")?).join("kubernetes_descriptors.bin");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}
