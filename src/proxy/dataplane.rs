//! Applying generated rules to the kernel, cleaning up conntrack entries of UDP
//! flows whose endpoint went away, and the status file a benchmark or a person can
//! read to see what was programmed when.

use crate::model::{Family, Protocol, ServicePort};
use crate::{iptables, nftables};
use rind_runtime::ProxyMode;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("kubeProxyMode is none: this node runs no service proxy")]
    Disabled,
    #[error("{program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} refused the rules ({status}): {stderr}")]
    Rejected {
        program: String,
        status: String,
        stderr: String,
    },
}

/// Counts of one sync, for the status file.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncStats {
    /// Bytes of rules handed to the kernel (0 when nothing changed).
    pub bytes: usize,
}

/// A UDP flow target, for conntrack cleanup: (cluster IP or None for a node port,
/// port, endpoint address).
type UdpTarget = (Option<IpAddr>, u16, IpAddr);

/// One family's data plane (a dual-stack node runs two).
pub struct Dataplane {
    mode: ProxyMode,
    family: Family,
    /// The pod network of this family.
    pod_subnet: String,
    nft_last: Option<nftables::Applied>,
    ipt_last: Option<iptables::Applied>,
    udp_last: BTreeSet<UdpTarget>,
    /// UDP Services (cluster IP, port) that had no endpoint at the last sync.
    udp_empty_last: BTreeSet<(IpAddr, u16)>,
}

impl Dataplane {
    /// The IPv4 plane.
    pub fn new(mode: ProxyMode, pod_subnet: &str) -> Result<Dataplane, ProxyError> {
        Self::for_family(mode, pod_subnet, Family::V4)
    }

    /// The plane of `family`, for its pod network `pod_subnet`.
    pub fn for_family(
        mode: ProxyMode,
        pod_subnet: &str,
        family: Family,
    ) -> Result<Dataplane, ProxyError> {
        if mode == ProxyMode::None {
            return Err(ProxyError::Disabled);
        }
        Ok(Dataplane {
            mode,
            family,
            pod_subnet: pod_subnet.to_string(),
            nft_last: None,
            ipt_last: None,
            udp_last: BTreeSet::new(),
            udp_empty_last: BTreeSet::new(),
        })
    }

    /// Programs `ports`; `full` rewrites every rule instead of only the changed ones.
    pub async fn sync(
        &mut self,
        ports: &[ServicePort],
        full: bool,
    ) -> Result<SyncStats, ProxyError> {
        let bytes = match self.mode {
            ProxyMode::Nftables => self.sync_nft(ports, full).await?,
            ProxyMode::Iptables | ProxyMode::None => self.sync_iptables(ports, full).await?,
        };
        self.clean_conntrack(ports);
        Ok(SyncStats { bytes })
    }

    async fn sync_nft(&mut self, ports: &[ServicePort], full: bool) -> Result<usize, ProxyError> {
        // A failed transaction changes nothing, but until one succeeds what the kernel
        // holds is unknown to us in the sense that the next sync must be a full one.
        let old = if full { None } else { self.nft_last.take() };
        let plan = nftables::plan(ports, &self.pod_subnet, old, self.family);
        if !plan.text.is_empty() {
            feed("nft", &["-f", "-"], &plan.text).await?;
        }
        self.nft_last = Some(plan.applied);
        Ok(plan.text.len())
    }

    async fn sync_iptables(
        &mut self,
        ports: &[ServicePort],
        full: bool,
    ) -> Result<usize, ProxyError> {
        let program = self.family.iptables();
        // As for nftables: after a failure the next sync is a full one. A full sync
        // reads what iptables-save (ip6tables-save) shows: which of our chains exist,
        // and which of the jumps into them from the built-in chains are missing, to be
        // put back in the same restore.
        let (plan, hooks) = match (full, self.ipt_last.take()) {
            (false, Some(old)) => (
                iptables::plan_partial(ports, &self.pod_subnet, old, self.family),
                Vec::new(),
            ),
            _ => {
                let filter = save(program, "filter").await?;
                let nat = save(program, "nat").await?;
                let known = iptables::Known {
                    filter: iptables::Known::parse_save(&filter),
                    nat: iptables::Known::parse_save(&nat),
                };
                (
                    iptables::plan_full(ports, &self.pod_subnet, &known, self.family),
                    iptables::missing_hooks(&filter, &nat),
                )
            }
        };
        let text = iptables::with_hooks(&plan.text, &hooks);
        if !text.is_empty() {
            // -w: wait for the xtables lock rather than fail when another writer
            // (the network agent, the CNI portmap plugin) holds it.
            let restore = format!("{program}-restore");
            feed(&restore, &["-w", "5", "--noflush"], &text).await?;
        }
        self.ipt_last = Some(plan.applied);
        Ok(text.len())
    }

    /// Deletes conntrack entries of UDP flows to endpoints that no longer serve their
    /// Service: UDP has no connection to end, so without this a client keeps sending
    /// to the old endpoint for as long as it keeps the flow alive. Also clears flows
    /// to UDP Services that had no endpoint (their packets were refused, and the
    /// entries would outlive the refusal).
    fn clean_conntrack(&mut self, ports: &[ServicePort]) {
        let mut commands = self.conntrack_commands(ports);
        if commands.is_empty() {
            return;
        }
        if self.family == Family::V6 {
            // conntrack works on IPv4 entries unless told the family.
            for args in &mut commands {
                args.splice(0..0, ["-f".to_string(), "ipv6".to_string()]);
            }
        }
        tokio::spawn(async move {
            for args in commands {
                // Exit status 1 means "no entry matched": nothing to do.
                match Command::new("conntrack")
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                {
                    Ok(_) => tracing::debug!("conntrack {}", args.join(" ")),
                    Err(err) => tracing::warn!("conntrack {}: {err}", args.join(" ")),
                }
            }
        });
    }

    /// The `conntrack` invocations that clean up after this sync, remembering what
    /// this sync serves for the next one.
    fn conntrack_commands(&mut self, ports: &[ServicePort]) -> Vec<Vec<String>> {
        let mut now = BTreeSet::new();
        let mut empty_now = BTreeSet::new();
        for sp in ports.iter().filter(|p| p.protocol == Protocol::Udp) {
            let eps = sp.cluster_endpoints();
            if eps.is_empty() {
                empty_now.insert((sp.cluster_ip, sp.port));
            }
            for ep in sp.endpoints.iter() {
                if !eps.iter().any(|e| e.ip == ep.ip && e.port == ep.port) {
                    continue;
                }
                now.insert((Some(sp.cluster_ip), sp.port, ep.ip));
                if let Some(np) = sp.node_port {
                    now.insert((None, np, ep.ip));
                }
            }
        }
        let mut commands: Vec<Vec<String>> = Vec::new();
        for (ip, port, ep) in self.udp_last.difference(&now) {
            let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
            if let Some(ip) = ip {
                args.extend(["--orig-dst".into(), ip.to_string()]);
            }
            args.extend([
                "--orig-port-dst".into(),
                port.to_string(),
                "--dst-nat".into(),
                ep.to_string(),
            ]);
            commands.push(args);
        }
        for (ip, port) in self.udp_empty_last.difference(&empty_now) {
            commands.push(vec![
                "-D".into(),
                "-p".into(),
                "udp".into(),
                "--orig-dst".into(),
                ip.to_string(),
                "--orig-port-dst".into(),
                port.to_string(),
            ]);
        }
        self.udp_last = now;
        self.udp_empty_last = empty_now;
        commands
    }
}

/// Runs `program` with `input` on its stdin; its stderr is the error on failure.
async fn feed(program: &str, args: &[&str], input: &str) -> Result<(), ProxyError> {
    let spawn_err = |source| ProxyError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(spawn_err)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if !out.status.success() {
        return Err(ProxyError::Rejected {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

async fn save(program: &str, table: &str) -> Result<String, ProxyError> {
    run(&format!("{program}-save"), &["-t", table]).await
}

async fn run(program: &str, args: &[&str]) -> Result<String, ProxyError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| ProxyError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ProxyError::Rejected {
            program: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the proxy last programmed, written as JSON after every sync.
pub struct Status {
    mode: ProxyMode,
    syncs: u64,
    last: serde_json::Value,
    last_full: serde_json::Value,
}

impl Status {
    pub fn new(mode: ProxyMode) -> Status {
        Status {
            mode,
            syncs: 0,
            last: serde_json::Value::Null,
            last_full: serde_json::Value::Null,
        }
    }

    pub fn record(
        &mut self,
        full: bool,
        took: Duration,
        revision: u64,
        ports: &[ServicePort],
        stats: SyncStats,
    ) {
        self.syncs += 1;
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let entry = serde_json::json!({
            // Wall-clock time the transaction was committed (seconds since the epoch).
            "appliedAt": at,
            "durationMs": took.as_secs_f64() * 1e3,
            "full": full,
            // The highest resourceVersion of the Services and EndpointSlices read.
            "revision": revision,
            "servicePorts": ports.len(),
            "endpoints": ports.iter().map(|p| p.endpoints.len()).sum::<usize>(),
            "bytes": stats.bytes,
        });
        if full {
            self.last_full = entry.clone();
        }
        self.last = entry;
    }

    pub fn write(&self, path: &str) -> std::io::Result<()> {
        let doc = serde_json::json!({
            "pid": std::process::id(),
            "mode": format!("{:?}", self.mode).to_lowercase(),
            "syncs": self.syncs,
            "last": self.last,
            "lastFull": self.last_full,
        });
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Renamed into place so a reader never sees half a file.
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, doc.to_string())?;
        std::fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn udp(eps: &[&str]) -> Vec<ServicePort> {
        vec![ServicePort {
            name: "default/dns:dns".into(),
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 53,
            protocol: Protocol::Udp,
            node_port: None,
            external_ips: vec![],
            affinity: None,
            internal_local: false,
            external_local: false,
            endpoints: eps
                .iter()
                .map(|ip| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: 5353,
                    ready: true,
                    serving: true,
                    terminating: false,
                    local: true,
                })
                .collect(),
        }]
    }

    #[test]
    fn conntrack_forgets_udp_flows_of_endpoints_that_left() {
        let mut plane = Dataplane::new(ProxyMode::Nftables, "10.244.0.0/16").unwrap();
        // No endpoint at first: nothing to clean yet.
        assert!(plane.conntrack_commands(&udp(&[])).is_empty());
        // Endpoints arrive: flows refused meanwhile are forgotten.
        let arrived = plane.conntrack_commands(&udp(&["10.244.0.5", "10.244.0.6"]));
        assert_eq!(
            arrived,
            [[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                "10.96.0.10",
                "--orig-port-dst",
                "53"
            ]]
        );
        // One leaves: its flows go.
        let left = plane.conntrack_commands(&udp(&["10.244.0.5"]));
        assert_eq!(
            left,
            [[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                "10.96.0.10",
                "--orig-port-dst",
                "53",
                "--dst-nat",
                "10.244.0.6"
            ]]
        );
        assert!(plane.conntrack_commands(&udp(&["10.244.0.5"])).is_empty());
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::model::Endpoint;
    use std::net::Ipv4Addr;

    /// How long generating and rendering 1,000 Services of 10 endpoints takes in this
    /// build (the rest of a sync is the kernel transaction); `cargo test -p rind-proxy
    /// -- --ignored --nocapture generation_time`.
    #[test]
    #[ignore = "prints a timing"]
    fn generation_time() {
        let ports: Vec<ServicePort> = (0..1000u32)
            .map(|i| ServicePort {
                name: format!("default/bench-{i}:http"),
                cluster_ip: Ipv4Addr::from(0x0a60_0000 + i).into(),
                port: 80,
                protocol: Protocol::Tcp,
                node_port: None,
                external_ips: vec![],
                affinity: None,
                internal_local: false,
                external_local: false,
                endpoints: (0..10u32)
                    .map(|j| Endpoint {
                        ip: Ipv4Addr::from(0x0afa_0000 + i * 10 + j).into(),
                        port: 8080,
                        ready: true,
                        serving: true,
                        terminating: false,
                        local: false,
                    })
                    .collect(),
            })
            .collect();
        // The model, from the objects the watches hold.
        let services: Vec<k8s_openapi::api::core::v1::Service> = (0..1000u32)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("bench-{i}"), "namespace": "default"},
                    "spec": {"clusterIP": Ipv4Addr::from(0x0a60_0000 + i).to_string(),
                             "ports": [{"name": "http", "port": 80}]},
                }))
                .unwrap()
            })
            .collect();
        let slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice> = (0..1000u32)
            .map(|i| {
                let eps: Vec<serde_json::Value> = (0..10u32)
                    .map(|j| serde_json::json!({"addresses": [Ipv4Addr::from(0x0afa_0000 + i * 10 + j).to_string()],
                                                "conditions": {"ready": true}}))
                    .collect();
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("bench-{i}"), "namespace": "default",
                                 "labels": {crate::model::SERVICE_NAME_LABEL: format!("bench-{i}")}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": eps,
                }))
                .unwrap()
            })
            .collect();
        let t = std::time::Instant::now();
        let svc_refs: Vec<_> = services.iter().collect();
        let slice_refs: Vec<_> = slices.iter().collect();
        let built = crate::model::build(&svc_refs, &slice_refs, "n1");
        println!(
            "model: {} ports from 1,000 Services and EndpointSlices in {:?}",
            built.len(),
            t.elapsed()
        );
        let t = std::time::Instant::now();
        let full = nftables::plan(&ports, "10.244.0.0/16", None, Family::V4);
        println!(
            "nftables: full sync plan {:?} ({} bytes)",
            t.elapsed(),
            full.text.len()
        );
        let mut changed = ports.clone();
        changed[500].endpoints[0].ip = Ipv4Addr::new(10, 251, 0, 1).into();
        let t = std::time::Instant::now();
        let partial = nftables::plan(&changed, "10.244.0.0/16", Some(full.applied), Family::V4);
        println!(
            "nftables: partial sync plan, one endpoint changed {:?} ({} bytes)",
            t.elapsed(),
            partial.text.len()
        );
        let t = std::time::Instant::now();
        let full = iptables::plan_full(
            &ports,
            "10.244.0.0/16",
            &iptables::Known::default(),
            Family::V4,
        );
        println!(
            "iptables: full sync plan {:?} ({} bytes)",
            t.elapsed(),
            full.text.len()
        );
        let t = std::time::Instant::now();
        let partial = iptables::plan_partial(&changed, "10.244.0.0/16", full.applied, Family::V4);
        println!(
            "iptables: partial sync plan, one endpoint changed {:?} ({} bytes)",
            t.elapsed(),
            partial.text.len()
        );
    }
}
