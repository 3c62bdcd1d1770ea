//! `kubectl delete --cascade=background|foreground|orphan` against the API server with
//! the garbage collector running, as in a cluster.

use rind_testing::{TestServer, client, eventually, fails, ok, start, write};

/// One owner config map and its two dependents (blocking the owner's deletion).
async fn family(server: &TestServer, owner: &str) {
    let out = ok(server, &["create", "configmap", owner]).await;
    assert_eq!(out, format!("configmap/{owner} created\n"));
    let uid = ok(
        server,
        &["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"],
    )
    .await;
    for child in ["a", "b"] {
        let file = write(
            server.dir.path(),
            &format!("{owner}-{child}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}-{child}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\n"
            ),
        );
        ok(server, &["create", "-f", &file]).await;
    }
}

/// The config maps that exist, by name, sorted.
async fn config_maps(server: &TestServer) -> String {
    ok(
        server,
        &[
            "get",
            "cm",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {end}",
        ],
    )
    .await
}

/// Waits until the config maps are exactly `want`.
async fn config_maps_become(server: &TestServer, want: &str) {
    eventually(&format!("config maps {want:?}"), || async {
        let have = config_maps(server).await;
        (have.trim() == want)
            .then_some(())
            .ok_or_else(|| format!("they are {:?}", have.trim()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn delete_with_each_cascade() {
    let server = start().await;
    // The collector acts on what the cascade asks for, as in a cluster.
    let gc = tokio::spawn(crate::gc::run(client(&server).await));
    let base = config_maps(&server).await;
    let base = base.trim();
    let with = |names: &str| {
        let mut all: Vec<&str> = base.split_whitespace().chain(names.split(' ')).collect();
        all.sort();
        all.join(" ")
    };
    for owner in ["bg", "fg", "orph"] {
        family(&server, owner).await;
    }

    let out = ok(&server, &["delete", "cm", "bg", "--cascade=background"]).await;
    assert_eq!(out, "configmap \"bg\" deleted from default namespace\n");
    config_maps_become(&server, &with("fg fg-a fg-b orph orph-a orph-b")).await;

    // Foreground: kubectl waits until the owner is gone, which is after its dependents.
    let out = ok(&server, &["delete", "cm", "fg", "--cascade=foreground"]).await;
    assert_eq!(out, "configmap \"fg\" deleted from default namespace\n");
    assert_eq!(
        config_maps(&server).await.trim(),
        with("orph orph-a orph-b")
    );

    // Orphan: the dependents stay, without their owner reference.
    let out = ok(&server, &["delete", "cm", "orph", "--cascade=orphan"]).await;
    assert_eq!(out, "configmap \"orph\" deleted from default namespace\n");
    assert_eq!(config_maps(&server).await.trim(), with("orph-a orph-b"));
    let owners = ok(
        &server,
        &[
            "get",
            "cm",
            "orph-a",
            "orph-b",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ],
    )
    .await;
    assert_eq!(owners, "");
    let err = fails(&server, &["delete", "cm", "orph-a", "--cascade=sideways"]).await;
    assert!(
        err.contains("invalid cascade value (sideways). Must be \"background\", \"foreground\", or \"orphan\""),
        "{err}"
    );
    gc.abort();
}
