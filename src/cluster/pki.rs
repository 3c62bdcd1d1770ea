//! The cluster's certificates, generated on the host at `create cluster` and written to
//! each node in kubeadm's layout (`/etc/kubernetes/pki`), so tools that know kubeadm
//! nodes find them where they expect.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rind_runtime::paths;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating the {what} certificate: {source}")]
    Generate { what: String, source: rcgen::Error },
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct KeyCert {
    pub cert_pem: String,
    pub key_pem: String,
}

struct Authority {
    /// None for an authority loaded from a running cluster: its issuer is then read
    /// back from the certificate.
    params: Option<CertificateParams>,
    key: KeyPair,
    cert_pem: String,
}

/// The cluster's two CAs (Kubernetes and etcd, as kubeadm keeps them apart) and the
/// service-account signing key.
pub struct ClusterPki {
    ca: Authority,
    etcd_ca: Authority,
    sa_key: KeyPair,
    /// Extra names in every API server certificate (kubeadm's `apiServer.certSANs`).
    pub extra_api_sans: Vec<String>,
}

/// One file to place in a node.
pub struct NodeFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What a node's certificates must name.
pub struct NodeIdentity<'a> {
    pub name: &'a str,
    pub ip: &'a str,
    pub control_plane: bool,
    /// The first IP of the service subnet (the `kubernetes` Service's ClusterIP).
    pub service_ip: &'a str,
    /// Where components on this node reach the API server.
    pub api_server_url: &'a str,
    /// More names for the API server's certificate (an HA cluster's load balancer).
    pub api_server_sans: &'a [String],
}

impl Authority {
    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        match &self.params {
            Some(params) => Ok(Issuer::from_params(params, &self.key)),
            None => Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|source| {
                PkiError::Generate {
                    what: "authority (loading)".to_string(),
                    source,
                }
            }),
        }
    }
}

fn validity(params: &mut CertificateParams) {
    // Valid from a year back (tolerates skewed clocks between host and nodes) for ten
    // years: a local cluster should never die of an expired certificate.
    let year = jiff::Zoned::now().year() as i32;
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
}

fn generate_authority(common_name: &str) -> Result<Authority, PkiError> {
    let err = |source| PkiError::Generate {
        what: common_name.to_string(),
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(Authority {
        cert_pem: cert.pem(),
        params: Some(params),
        key,
    })
}

/// What a leaf certificate is for.
enum Usage {
    Server,
    Client,
    Both,
}

fn issue<S: rcgen::SigningKey>(
    issuer: &Issuer<'_, S>,
    common_name: &str,
    organizations: &[&str],
    sans: &[String],
    usage: Usage,
) -> Result<KeyCert, PkiError> {
    let err = |source| PkiError::Generate {
        what: common_name.to_string(),
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(sans.to_vec()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for org in organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Both => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok(KeyCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl ClusterPki {
    pub fn generate() -> Result<ClusterPki, PkiError> {
        let sa_key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "service-account signing key".to_string(),
            source,
        })?;
        Ok(ClusterPki {
            ca: generate_authority("kubernetes")?,
            etcd_ca: generate_authority("etcd-ca")?,
            sa_key,
            extra_api_sans: Vec::new(),
        })
    }

    /// The cluster's authorities and service-account key as a control plane keeps
    /// them (PEM), to issue a control plane added to a running cluster.
    pub fn from_existing(
        ca: (&str, &str),
        etcd_ca: (&str, &str),
        sa_key_pem: &str,
        extra_api_sans: Vec<String>,
    ) -> Result<ClusterPki, PkiError> {
        let load = |what: &str, (cert_pem, key_pem): (&str, &str)| {
            let err = |source| PkiError::Generate {
                what: format!("{what} (loading)"),
                source,
            };
            Ok::<_, PkiError>(Authority {
                params: None,
                key: KeyPair::from_pem(key_pem).map_err(err)?,
                cert_pem: cert_pem.to_string(),
            })
        };
        Ok(ClusterPki {
            ca: load("cluster CA", ca)?,
            etcd_ca: load("etcd CA", etcd_ca)?,
            sa_key: KeyPair::from_pem(sa_key_pem).map_err(|source| PkiError::Generate {
                what: "service-account signing key (loading)".to_string(),
                source,
            })?,
            extra_api_sans,
        })
    }

    /// A kubeconfig at `path` for `user` (a client certificate of the cluster CA, no
    /// groups), reaching the API server at `api_server_url`.
    pub fn client_kubeconfig(
        &self,
        path: &str,
        user: &str,
        api_server_url: &str,
    ) -> Result<NodeFile, PkiError> {
        let ca = self.ca.issuer()?;
        let pair = issue(&ca, user, &[], &[], Usage::Client)?;
        let config = super::kubeconfig::Kubeconfig::single(
            "kubernetes",
            api_server_url,
            &self.ca.cert_pem,
            user,
            &pair,
        );
        Ok(NodeFile {
            path: path.to_string(),
            contents: config.to_yaml().into_bytes(),
            mode: 0o600,
        })
    }

    /// The cluster CA's certificate (PEM), which the load balancer checks API servers with.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem.clone()
    }

    /// Every file a node needs: certificates, keys and kubeconfigs at kubeadm's paths.
    pub fn node_files(&self, node: &NodeIdentity) -> Result<Vec<NodeFile>, PkiError> {
        let mut files = Vec::new();
        let put_pair = |files: &mut Vec<NodeFile>, crt: &str, key: &str, pair: &KeyCert| {
            files.push(NodeFile {
                path: crt.to_string(),
                contents: pair.cert_pem.clone().into_bytes(),
                mode: 0o644,
            });
            files.push(NodeFile {
                path: key.to_string(),
                contents: pair.key_pem.clone().into_bytes(),
                mode: 0o600,
            });
        };
        let ca = self.ca.issuer()?;
        let etcd_ca = self.etcd_ca.issuer()?;
        let node_sans = node_sans(node);
        files.extend(identity_files(&ca, &self.ca.cert_pem, node)?);
        let ca_pair = KeyCert {
            cert_pem: self.ca.cert_pem.clone(),
            key_pem: self.ca.key.serialize_pem(),
        };
        if node.control_plane {
            // The CA key lives on control-plane nodes only, as with kubeadm: it signs
            // the certificates of nodes added later.
            put_pair(&mut files, paths::CA_CRT, paths::CA_KEY, &ca_pair);
            let mut api_sans: Vec<String> = [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            api_sans.push(node.service_ip.to_string());
            api_sans.extend(node_sans.iter().cloned());
            api_sans.extend(self.extra_api_sans.iter().cloned());
            api_sans.extend(node.api_server_sans.iter().cloned());
            put_pair(
                &mut files,
                paths::APISERVER_CRT,
                paths::APISERVER_KEY,
                &issue(&ca, "kube-apiserver", &[], &api_sans, Usage::Server)?,
            );
            put_pair(
                &mut files,
                paths::APISERVER_KUBELET_CLIENT_CRT,
                paths::APISERVER_KUBELET_CLIENT_KEY,
                &issue(
                    &ca,
                    paths::APISERVER_KUBELET_CLIENT_USER,
                    &["kubeadm:cluster-admins"],
                    &[],
                    Usage::Client,
                )?,
            );
            put_pair(
                &mut files,
                paths::APISERVER_ETCD_CLIENT_CRT,
                paths::APISERVER_ETCD_CLIENT_KEY,
                &issue(
                    &etcd_ca,
                    "kube-apiserver-etcd-client",
                    &[],
                    &[],
                    Usage::Client,
                )?,
            );
            files.push(NodeFile {
                path: paths::SA_KEY.to_string(),
                contents: self.sa_key.serialize_pem().into_bytes(),
                mode: 0o600,
            });
            files.push(NodeFile {
                path: paths::SA_PUB.to_string(),
                contents: self.sa_key.public_key_pem().into_bytes(),
                mode: 0o644,
            });
            let etcd_ca_pair = KeyCert {
                cert_pem: self.etcd_ca.cert_pem.clone(),
                key_pem: self.etcd_ca.key.serialize_pem(),
            };
            put_pair(
                &mut files,
                paths::ETCD_CA_CRT,
                paths::ETCD_CA_KEY,
                &etcd_ca_pair,
            );
            // etcd's server certificate is also its client certificate for etcdctl, as
            // the issue's check (`etcdctl --cert server.crt`) and kubeadm's layout expect.
            put_pair(
                &mut files,
                paths::ETCD_SERVER_CRT,
                paths::ETCD_SERVER_KEY,
                &issue(&etcd_ca, node.name, &[], &node_sans, Usage::Both)?,
            );
            put_pair(
                &mut files,
                paths::ETCD_PEER_CRT,
                paths::ETCD_PEER_KEY,
                &issue(&etcd_ca, node.name, &[], &node_sans, Usage::Both)?,
            );
            for (path, user, orgs) in [
                (
                    paths::ADMIN_CONF,
                    "kubernetes-admin",
                    vec!["kubeadm:cluster-admins"],
                ),
                (paths::SCHEDULER_CONF, "system:kube-scheduler", vec![]),
                (
                    paths::CONTROLLER_MANAGER_CONF,
                    "system:kube-controller-manager",
                    vec![],
                ),
            ] {
                let pair = issue(&ca, user, &orgs, &[], Usage::Client)?;
                let config = super::kubeconfig::Kubeconfig::single(
                    "kubernetes",
                    node.api_server_url,
                    &self.ca.cert_pem,
                    user,
                    &pair,
                );
                files.push(NodeFile {
                    path: path.to_string(),
                    contents: config.to_yaml().into_bytes(),
                    mode: 0o600,
                });
            }
        } else {
            files.push(NodeFile {
                path: paths::CA_CRT.to_string(),
                contents: ca_pair.cert_pem.into_bytes(),
                mode: 0o644,
            });
        }
        Ok(files)
    }
}

/// The addresses a node's own certificates name.
fn node_sans(node: &NodeIdentity) -> Vec<String> {
    vec![
        node.name.to_string(),
        node.ip.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
}

/// What every node holds, whatever its role: the kubelet's serving certificate, and the
/// kubelet's and service proxy's kubeconfigs with their own client certificates.
fn identity_files<S: rcgen::SigningKey>(
    ca: &Issuer<'_, S>,
    ca_cert_pem: &str,
    node: &NodeIdentity,
) -> Result<Vec<NodeFile>, PkiError> {
    let mut files = Vec::new();
    let node_sans = node_sans(node);
    let pair = issue(ca, node.name, &[], &node_sans, Usage::Server)?;
    // Serves the kubelet's port (logs, exec) to the API server, which dials the node IP.
    files.push(NodeFile {
        path: paths::KUBELET_SERVING_CRT.to_string(),
        contents: pair.cert_pem.into_bytes(),
        mode: 0o644,
    });
    files.push(NodeFile {
        path: paths::KUBELET_SERVING_KEY.to_string(),
        contents: pair.key_pem.into_bytes(),
        mode: 0o600,
    });
    let kubelet_user = format!("system:node:{}", node.name);
    let kubelet_pair = issue(ca, &kubelet_user, &["system:nodes"], &[], Usage::Client)?;
    let kubelet_conf = super::kubeconfig::Kubeconfig::single(
        "kubernetes",
        node.api_server_url,
        ca_cert_pem,
        &kubelet_user,
        &kubelet_pair,
    );
    files.push(NodeFile {
        path: paths::KUBELET_CONF.to_string(),
        contents: kubelet_conf.to_yaml().into_bytes(),
        mode: 0o600,
    });
    // The service proxy's own identity, as kube-proxy's: the default policy binds
    // `system:kube-proxy` to `system:node-proxier` (list/watch Services and
    // EndpointSlices), which a node's credentials do not cover.
    let proxy_user = "system:kube-proxy";
    let proxy_pair = issue(ca, proxy_user, &[], &[], Usage::Client)?;
    let proxy_conf = super::kubeconfig::Kubeconfig::single(
        "kubernetes",
        node.api_server_url,
        ca_cert_pem,
        proxy_user,
        &proxy_pair,
    );
    files.push(NodeFile {
        path: paths::PROXY_CONF.to_string(),
        contents: proxy_conf.to_yaml().into_bytes(),
        mode: 0o600,
    });
    Ok(files)
}

/// The files of a worker node joining a running cluster (`rind add node`), signed by the
/// cluster CA read out of a control-plane node, where kubeadm keeps it too.
pub fn worker_files(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node: &NodeIdentity,
) -> Result<Vec<NodeFile>, PkiError> {
    let err = |source| PkiError::Generate {
        what: "cluster CA (loading)".to_string(),
        source,
    };
    let key = KeyPair::from_pem(ca_key_pem).map_err(err)?;
    let ca = Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(err)?;
    let mut files = identity_files(&ca, ca_cert_pem, node)?;
    files.push(NodeFile {
        path: paths::CA_CRT.to_string(),
        contents: ca_cert_pem.as_bytes().to_vec(),
        mode: 0o644,
    });
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn apiserver_certificate_names_every_address_clients_use() {
        let pki = ClusterPki::generate().unwrap();
        let node = NodeIdentity {
            name: "rind-control-plane",
            ip: "172.18.0.2",
            control_plane: true,
            service_ip: "10.96.0.1",
            api_server_url: "https://172.18.0.2:6443",
            api_server_sans: &[],
        };
        let files = pki.node_files(&node).unwrap();
        let api = files
            .iter()
            .find(|f| f.path == paths::APISERVER_CRT)
            .unwrap();
        let der = parse(std::str::from_utf8(&api.contents).unwrap());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .clone();
        let names: Vec<String> = sans
            .iter()
            .map(|n| match n {
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
                }
                GeneralName::DNSName(d) => d.to_string(),
                other => other.to_string(),
            })
            .collect();
        for want in [
            "127.0.0.1",
            "172.18.0.2",
            "10.96.0.1",
            "localhost",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(
                names.iter().any(|n| n.contains(want)),
                "{want} missing from {names:?}"
            );
        }
        // Verify the chain: the API server's certificate is signed by the cluster CA.
        let ca_der = parse(&pki.ca.cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert!(
            files
                .iter()
                .any(|f| f.path == paths::ETCD_SERVER_KEY && f.mode == 0o600)
        );
        assert!(files.iter().any(|f| f.path == paths::KUBELET_CONF));
    }

    #[test]
    fn added_workers_are_signed_by_the_clusters_ca() {
        let pki = ClusterPki::generate().unwrap();
        let node = NodeIdentity {
            name: "rind-worker3",
            ip: "172.18.0.9",
            control_plane: false,
            service_ip: "10.96.0.1",
            api_server_url: "https://172.18.0.2:6443",
            api_server_sans: &[],
        };
        let files = worker_files(&pki.ca.cert_pem, &pki.ca.key.serialize_pem(), &node).unwrap();
        let serving = files
            .iter()
            .find(|f| f.path == paths::KUBELET_SERVING_CRT)
            .unwrap();
        let der = parse(std::str::from_utf8(&serving.contents).unwrap());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ca_der = parse(&pki.ca.cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let kubelet = files
            .iter()
            .find(|f| f.path == paths::KUBELET_CONF)
            .unwrap();
        let text = std::str::from_utf8(&kubelet.contents).unwrap();
        assert!(text.contains("system:node:rind-worker3"), "{text}");
        assert!(files.iter().any(|f| f.path == paths::PROXY_CONF));
        assert!(!files.iter().any(|f| f.path == paths::CA_KEY));
    }

    #[test]
    fn workers_get_no_ca_key() {
        let pki = ClusterPki::generate().unwrap();
        let node = NodeIdentity {
            name: "rind-worker",
            ip: "172.18.0.3",
            control_plane: false,
            service_ip: "10.96.0.1",
            api_server_url: "https://172.18.0.2:6443",
            api_server_sans: &[],
        };
        let files = pki.node_files(&node).unwrap();
        assert!(
            !files
                .iter()
                .any(|f| f.path == paths::CA_KEY || f.path == paths::ETCD_CA_KEY)
        );
        assert!(files.iter().any(|f| f.path == paths::CA_CRT));
    }

    #[test]
    fn admin_is_a_cluster_admin() {
        use base64::Engine;
        let pki = ClusterPki::generate().unwrap();
        let node = NodeIdentity {
            name: "rind-control-plane",
            ip: "172.18.0.2",
            control_plane: true,
            service_ip: "10.96.0.1",
            api_server_url: "https://172.18.0.2:6443",
            api_server_sans: &[],
        };
        let files = pki.node_files(&node).unwrap();
        let admin = files.iter().find(|f| f.path == paths::ADMIN_CONF).unwrap();
        let config: serde_json::Value =
            rind_runtime::yaml::from_str(std::str::from_utf8(&admin.contents).unwrap()).unwrap();
        let cert = config["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .unwrap();
        let cert = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(cert)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://172.18.0.2:6443"
        );
        let der = parse(&cert);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let subject = cert.subject().to_string();
        assert!(
            subject.contains("CN=kubernetes-admin") && subject.contains("O=kubeadm:cluster-admins"),
            "{subject}"
        );
    }
}
