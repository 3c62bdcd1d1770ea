//! etcd membership of a running cluster, from the host through `etcdctl` in a
//! control-plane node (kubeadm's `join --control-plane` does the same through etcd's
//! API): announcing a control plane before it starts, so it joins as a member, and
//! removing the member of a control plane that goes. Also keeps an HA cluster's load
//! balancer pointed at its control planes.

use super::provider::{self, NodeContainer};
use anyhow::{Context, bail};
use bollard::Docker;
use rind_runtime::paths;

/// `etcdctl` against the node's own member, with the node's etcd client certificate
/// (kubeadm's layout: the server certificate doubles as a client one).
fn etcdctl(args: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "etcdctl",
        "--endpoints=https://127.0.0.1:2379",
        "--cacert",
        paths::ETCD_CA_CRT,
        "--cert",
        paths::ETCD_SERVER_CRT,
        "--key",
        paths::ETCD_SERVER_KEY,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.extend(args.iter().map(|s| s.to_string()));
    cmd
}

/// The cluster's control-plane containers (running or not).
pub async fn control_planes(docker: &Docker, cluster: &str) -> anyhow::Result<Vec<NodeContainer>> {
    let role = provider::role_label(rind_runtime::Role::ControlPlane);
    let mut nodes = provider::list_nodes(docker, Some(cluster)).await?;
    nodes.retain(|n| n.role == role);
    Ok(nodes)
}

/// Runs `etcdctl args` in the first control plane (other than `except`) where it
/// succeeds: a stopped or broken one is skipped.
async fn run_etcdctl(
    docker: &Docker,
    cluster: &str,
    except: Option<&str>,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut errors = Vec::new();
    for node in control_planes(docker, cluster).await? {
        if Some(node.name.as_str()) == except {
            continue;
        }
        let cmd = etcdctl(args);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        match provider::exec(docker, &node.name, &cmd).await {
            Ok(out) if out.exit_code == 0 => return Ok(out.stdout),
            Ok(out) => errors.push(format!("{}: {}", node.name, out.stderr.trim())),
            Err(err) => errors.push(format!("{}: {err:#}", node.name)),
        }
    }
    bail!(
        "etcdctl {} failed on every control plane of {cluster}: {}",
        args.join(" "),
        errors.join("; ")
    )
}

/// Announces a new control plane `name` at `ip` to the cluster's etcd, before its node
/// starts, and returns the `--initial-cluster` members (`name=https://IP:2380`) its
/// NodeConfig must carry, with `etcd_join_existing` set.
pub async fn add_member(
    docker: &Docker,
    cluster: &str,
    name: &str,
    ip: &str,
) -> anyhow::Result<Vec<String>> {
    let peer = format!("--peer-urls=https://{ip}:{}", paths::ETCD_PEER_PORT);
    let out = run_etcdctl(docker, cluster, Some(name), &["member", "add", name, &peer])
        .await
        .with_context(|| format!("adding {name} to the etcd cluster of {cluster}"))?;
    initial_cluster_of(&out)
        .with_context(|| format!("etcdctl member add printed no ETCD_INITIAL_CLUSTER: {out}"))
}

/// The members in `etcdctl member add`'s `ETCD_INITIAL_CLUSTER="a=…,b=…"` line.
fn initial_cluster_of(output: &str) -> Option<Vec<String>> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("ETCD_INITIAL_CLUSTER="))?;
    let members: Vec<String> = line
        .trim_matches('"')
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    (!members.is_empty()).then_some(members)
}

/// Removes the etcd member of control plane `name` at `ip` (nothing when it is no
/// member). A member announced but never started has no name yet in `member list`, so
/// its peer URL finds it too.
pub async fn remove_member(
    docker: &Docker,
    cluster: &str,
    name: &str,
    ip: &str,
) -> anyhow::Result<()> {
    let list = run_etcdctl(docker, cluster, Some(name), &["member", "list"]).await?;
    let peer = format!("https://{ip}:{}", paths::ETCD_PEER_PORT);
    let Some(id) = member_id(&list, name, &peer) else {
        return Ok(());
    };
    run_etcdctl(docker, cluster, Some(name), &["member", "remove", &id])
        .await
        .with_context(|| format!("removing {name} from the etcd cluster of {cluster}"))?;
    Ok(())
}

/// The ID of the member named `name` or with peer URL `peer` in `etcdctl member list`
/// output (`ID, status, name, peer URLs, client URLs, is learner`).
fn member_id(list: &str, name: &str, peer: &str) -> Option<String> {
    list.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let named = fields.get(2) == Some(&name);
        let at_peer = fields
            .get(3)
            .is_some_and(|urls| urls.split(' ').any(|u| u == peer));
        (named || at_peer).then(|| fields[0].to_string())
    })
}

/// Points an HA cluster's load balancer at every control plane it has now (after one
/// was added or deleted); nothing for a cluster without a load balancer.
pub async fn sync_load_balancer(docker: &Docker, cluster: &str) -> anyhow::Result<()> {
    let Some(lb) = provider::load_balancer_of(docker, cluster).await? else {
        return Ok(());
    };
    let backends: Vec<String> = control_planes(docker, cluster)
        .await?
        .iter()
        .filter_map(|n| n.ip)
        .map(|ip| format!("{ip}:{}", paths::APISERVER_PORT))
        .collect();
    provider::set_load_balancer_backends(docker, &lb.name, &backends).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_add_output() {
        let out = "Member 8e9e05c52164694d added to cluster cdf818194e3a8c32\n\nETCD_NAME=\"c-control-plane4\"\nETCD_INITIAL_CLUSTER=\"c-control-plane=https://172.28.0.2:2380,c-control-plane4=https://172.28.0.9:2380\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"https://172.28.0.9:2380\"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n";
        assert_eq!(
            initial_cluster_of(out).unwrap(),
            [
                "c-control-plane=https://172.28.0.2:2380",
                "c-control-plane4=https://172.28.0.9:2380"
            ]
        );
        assert_eq!(initial_cluster_of("nothing"), None);
    }

    #[test]
    fn members_by_name_or_peer_url() {
        // As etcdctl 3.4 prints it, with a member announced but not started yet.
        let list = "bd96afb3bbade437, started, c-control-plane, https://172.28.0.2:2380, https://172.28.0.2:2379, false\nfcde7dd852b29df9, unstarted, , https://172.28.0.250:2380, , false\n";
        assert_eq!(
            member_id(list, "c-control-plane", "https://172.28.0.2:2380").as_deref(),
            Some("bd96afb3bbade437")
        );
        assert_eq!(
            member_id(list, "c-control-plane4", "https://172.28.0.250:2380").as_deref(),
            Some("fcde7dd852b29df9")
        );
        assert_eq!(member_id(list, "other", "https://172.28.0.9:2380"), None);
    }
}
