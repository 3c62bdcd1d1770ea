//! CertificateSigningRequests end to end with the real kubectl: a request created by
//! a user records its requester; `kubectl certificate approve` lets the signer issue
//! a certificate from the cluster CA, with which kubectl then authenticates as the
//! request's CN; a request its signer refuses gets the Failed condition; a kubelet's
//! client request is approved on its own after a SubjectAccessReview.

use super::tests::{cluster_on, eventually};
use super::{Settings, SigningCa};
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair};
use rind_testing::{TestServer, fails, kubectl_binary, make_pki, ok, start_with_pki, write};
use serde_json::Value;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A key and a PEM CSR for `cn` in `org`.
fn request(cn: &str, org: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key.serialize_pem(), csr)
}

fn csr_yaml(name: &str, csr: &str, signer: &str, usages: &[&str]) -> String {
    let usages: Vec<String> = usages.iter().map(|u| format!("  - {u}")).collect();
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n  expirationSeconds: 86400\n  usages:\n{}\n",
        b64(csr.as_bytes()),
        usages.join("\n")
    )
}

async fn csr_json(server: &TestServer, name: &str) -> Value {
    serde_json::from_str(&ok(server, &["get", "csr", name, "-o", "json"]).await).unwrap()
}

/// The kubeconfig's one cluster line that names `key`.
fn kubeconfig_field(server: &TestServer, key: &str) -> String {
    let text = std::fs::read_to_string(&server.kubeconfig).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}: "))
                .map(str::to_string)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn approved_requests_give_certificates_that_authenticate() {
    let pki = make_pki();
    let server = start_with_pki(&pki).await;
    let c = cluster_on(
        server,
        Settings {
            signing_ca: Some(SigningCa {
                cert_pem: pki.ca_pem.clone(),
                key_pem: pki.ca_key.clone(),
            }),
            ..Settings::default()
        },
    )
    .await;
    let server = &c.server;
    let dir = server.dir.path();

    let (key, csr) = request("alice", "dev");
    let file = write(
        dir,
        "alice.yaml",
        &csr_yaml(
            "alice",
            &csr,
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
        ),
    );
    ok(server, &["create", "-f", &file]).await;
    let created = csr_json(server, "alice").await;
    // The requester is whoever sent it.
    assert_eq!(created["spec"]["username"], "kubernetes-admin", "{created}");
    assert_eq!(
        created["spec"]["groups"],
        serde_json::json!(["kubeadm:cluster-admins", "system:authenticated"])
    );
    let table = ok(server, &["get", "csr", "alice"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    assert!(
        table.contains("kubernetes.io/kube-apiserver-client")
            && table.contains("kubernetes-admin")
            && table.contains("24h")
            && table.contains("Pending"),
        "{table}"
    );

    let approved = ok(server, &["certificate", "approve", "alice"]).await;
    assert!(
        approved.contains("certificatesigningrequest.certificates.k8s.io/alice approved"),
        "{approved}"
    );
    let issued = eventually("the signer to issue alice's certificate", || async {
        let csr = csr_json(server, "alice").await;
        csr["status"]["certificate"].as_str().map(str::to_string)
    })
    .await;
    let signed = csr_json(server, "alice").await;
    let approval = &signed["status"]["conditions"][0];
    assert_eq!(approval["type"], "Approved");
    assert_eq!(approval["reason"], "KubectlApprove");
    assert!(approval["lastUpdateTime"].is_string() && approval["lastTransitionTime"].is_string());
    let table = ok(server, &["get", "csr", "alice"]).await;
    assert!(table.contains("Approved,Issued"), "{table}");

    // The certificate authenticates as its CN (and its O as a group).
    let cert = base64::engine::general_purpose::STANDARD
        .decode(issued)
        .unwrap();
    let cert_file = write(dir, "alice.crt", std::str::from_utf8(&cert).unwrap());
    let key_file = write(dir, "alice.key", &key);
    let config = write(
        dir,
        "alice.conf",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: alice\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: alice}}\ncurrent-context: c\n",
            kubeconfig_field(server, "server"),
            kubeconfig_field(server, "certificate-authority-data"),
        ),
    );
    let out = tokio::process::Command::new(kubectl_binary())
        .args([
            "--kubeconfig",
            &config,
            "--client-certificate",
            &cert_file,
            "--client-key",
            &key_file,
        ])
        .args(["auth", "whoami", "-o", "json"])
        .env("HOME", dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whoami: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        whoami["status"]["userInfo"]["username"], "alice",
        "{whoami}"
    );
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        serde_json::json!(["dev", "system:authenticated"])
    );

    // A request its signer refuses is marked Failed with the signer's reason.
    let (_, csr) = request("bob", "dev");
    let file = write(
        dir,
        "bob.yaml",
        &csr_yaml(
            "bob",
            &csr,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
        ),
    );
    ok(server, &["create", "-f", &file]).await;
    ok(server, &["certificate", "approve", "bob"]).await;
    let failed = eventually("bob's request to fail", || async {
        let csr = csr_json(server, "bob").await;
        let conditions = csr["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions.into_iter().find(|c| c["type"] == "Failed")
    })
    .await;
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert_eq!(
        failed["message"],
        "subject organization is not system:nodes"
    );
    let table = ok(server, &["get", "csr", "bob"]).await;
    assert!(table.contains("Approved,Failed"), "{table}");
    assert!(
        csr_json(server, "bob").await["status"]
            .get("certificate")
            .is_none()
    );

    // Denied requests stay unsigned; an approval cannot be taken back.
    let (_, csr) = request("carol", "dev");
    let file = write(
        dir,
        "carol.yaml",
        &csr_yaml(
            "carol",
            &csr,
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
        ),
    );
    ok(server, &["create", "-f", &file]).await;
    ok(server, &["certificate", "deny", "carol"]).await;
    let table = ok(server, &["get", "csr", "carol"]).await;
    assert!(table.contains("Denied"), "{table}");
    // kubectl will not approve it; a client that tries anyway is refused.
    let err = fails(server, &["certificate", "approve", "carol"]).await;
    assert!(err.contains("is already Denied"), "{err}");
    let mut carol = csr_json(server, "carol").await;
    carol["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "Approved", "status": "True", "reason": "Sneaky"}));
    let body = write(dir, "carol.json", &carol.to_string());
    let err = fails(
        server,
        &[
            "replace",
            "--raw",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/carol/approval",
            "-f",
            &body,
        ],
    )
    .await;
    assert!(
        err.contains("Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );

    // Bad requests are refused by validation, and system:masters by admission.
    let bad = write(
        dir,
        "bad.yaml",
        &csr_yaml("bad", "not a request", "example", &["client auth"]),
    );
    let err = fails(server, &["create", "-f", &bad]).await;
    assert!(
        err.contains("spec.request: Invalid value: []byte{0x6e, 0x6f, 0x74"),
        "{err}"
    );
    assert!(
        err.contains("PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    assert!(err.contains("spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form 'example.com/signer-name'"), "{err}");
    let (_, csr) = request("root", "system:masters");
    let root = write(
        dir,
        "root.yaml",
        &csr_yaml(
            "root",
            &csr,
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
        ),
    );
    let err = fails(server, &["create", "-f", &root]).await;
    assert!(err.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubelet_client_requests_are_approved_after_an_access_review() {
    let pki = make_pki();
    let server = start_with_pki(&pki).await;
    let c = cluster_on(
        server,
        Settings {
            signing_ca: Some(SigningCa {
                cert_pem: pki.ca_pem.clone(),
                key_pem: pki.ca_key.clone(),
            }),
            ..Settings::default()
        },
    )
    .await;
    let server = &c.server;
    let dir = server.dir.path();
    // What kubeadm grants nodes: renewing their own client certificates.
    let rbac = write(
        dir,
        "rbac.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: renew-node-certs\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests]\n  verbs: [create, get, list, watch]\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests/selfnodeclient]\n  verbs: [create]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: renew-node-certs\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: renew-node-certs\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: system:nodes\n",
    );
    ok(server, &["apply", "-f", &rbac]).await;
    let (_, csr) = request("system:node:n1", "system:nodes");
    let file = write(
        dir,
        "n1.yaml",
        &csr_yaml(
            "node-n1",
            &csr,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
        ),
    );
    ok(
        server,
        &[
            "create",
            "-f",
            &file,
            "--as=system:node:n1",
            "--as-group=system:nodes",
        ],
    )
    .await;
    let csr = eventually("the node's request to be approved and signed", || async {
        let csr = csr_json(server, "node-n1").await;
        csr["status"]["certificate"].is_string().then_some(csr)
    })
    .await;
    assert_eq!(csr["spec"]["username"], "system:node:n1");
    let approval = &csr["status"]["conditions"][0];
    assert_eq!(approval["reason"], "AutoApproved");
    assert_eq!(
        approval["message"],
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    );

    // Someone else's request for a node's certificate is left for a human.
    let (_, csr) = request("system:node:n2", "system:nodes");
    let file = write(
        dir,
        "n2.yaml",
        &csr_yaml(
            "node-n2",
            &csr,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
        ),
    );
    ok(
        server,
        &[
            "create",
            "-f",
            &file,
            "--as=system:node:n1",
            "--as-group=system:nodes",
        ],
    )
    .await;
    // The first request was handled after this one was created, so by the time a
    // later object is handled this one has been looked at.
    let (_, csr) = request("system:node:n1", "system:nodes");
    let file = write(
        dir,
        "n1b.yaml",
        &csr_yaml(
            "node-n1-again",
            &csr,
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "client auth"],
        ),
    );
    ok(
        server,
        &[
            "create",
            "-f",
            &file,
            "--as=system:node:n1",
            "--as-group=system:nodes",
        ],
    )
    .await;
    eventually("the node's second request to be approved", || async {
        let csr = csr_json(server, "node-n1-again").await;
        csr["status"]["certificate"].is_string().then_some(())
    })
    .await;
    let pending = csr_json(server, "node-n2").await;
    assert!(pending["status"].get("conditions").is_none(), "{pending}");
}
