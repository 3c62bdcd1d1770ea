//! The ServiceCIDR controller with the API server's allocator, driven by the real
//! kubectl: a new ServiceCIDR becomes Ready (and protected by its finalizer), which
//! widens the addresses Services can get; deleting it waits while a Service holds
//! one of its addresses, and completes once that address is released.

use super::tests::{cluster, eventually};
use rind_testing::{fails, kubectl, ok, write};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn a_second_service_cidr_widens_and_protects_its_range() {
    let c = cluster().await;
    let server = &c.server;
    let dir = server.dir.path();
    let extra = write(
        dir,
        "extra.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata:\n  name: extra\nspec:\n  cidrs:\n  - 10.100.0.0/24\n",
    );
    ok(server, &["create", "-f", &extra]).await;
    let cidr: Value = eventually("the new ServiceCIDR to become Ready", || async {
        let out = ok(server, &["get", "servicecidr", "extra", "-o", "json"]).await;
        let cidr: Value = serde_json::from_str(&out).unwrap();
        (cidr["status"]["conditions"][0]["status"] == "True").then_some(cidr)
    })
    .await;
    assert_eq!(
        cidr["status"]["conditions"][0]["message"],
        "Kubernetes Service CIDR is ready"
    );
    assert_eq!(
        cidr["metadata"]["finalizers"],
        serde_json::json!(["networking.k8s.io/service-cidr-finalizer"])
    );
    // The default one is protected as well.
    let default = ok(
        server,
        &[
            "get",
            "servicecidr",
            "kubernetes",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    )
    .await;
    assert!(
        default.contains("networking.k8s.io/service-cidr-finalizer"),
        "{default}"
    );

    let svc = write(
        dir,
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: wide\nspec:\n  clusterIP: 10.100.0.10\n  ports:\n  - port: 80\n",
    );
    ok(server, &["create", "-f", &svc]).await;

    // Deleting the range while a Service holds one of its addresses waits.
    ok(server, &["delete", "servicecidr", "extra", "--wait=false"]).await;
    let held: Value = eventually("the deleted ServiceCIDR to say why it stays", || async {
        let out = ok(server, &["get", "servicecidr", "extra", "-o", "json"]).await;
        let cidr: Value = serde_json::from_str(&out).unwrap();
        (cidr["status"]["conditions"][0]["reason"] == "Terminating").then_some(cidr)
    })
    .await;
    let condition = &held["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(
        condition["message"],
        "There are still IPAddresses referencing the ServiceCIDR, please remove them or create a new ServiceCIDR"
    );
    // Nothing more is allocated from it meanwhile.
    let another = write(
        dir,
        "another.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: another\nspec:\n  clusterIP: 10.100.0.11\n  ports:\n  - port: 80\n",
    );
    let err = fails(server, &["create", "-f", &another]).await;
    assert!(err.contains("does not match the current range"), "{err}");
    // Once the address is released the ServiceCIDR goes (after its grace period).
    ok(server, &["delete", "svc", "wide"]).await;
    eventually("the ServiceCIDR to be gone", || async {
        let out = kubectl(server, &["get", "servicecidr", "extra"]).await;
        (!out.status.success()).then_some(())
    })
    .await;
}
