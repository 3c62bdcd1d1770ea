use super::*;
use serde_json::json;

fn pod(ns: &str, name: &str, ip: &str, local: bool, labels: &[(&str, &str)]) -> PodView {
    PodView {
        namespace: ns.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ip: ip.parse().unwrap(),
        ipv6: None,
        local,
        ports: vec![("http".into(), "TCP".into(), 8080)],
    }
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn namespaces() -> BTreeMap<String, Labels> {
    namespace_labels([
        ("default".to_string(), Labels::new()),
        (
            "other".to_string(),
            Labels::from([("team".to_string(), "b".to_string())]),
        ),
    ])
}

fn pods() -> Vec<PodView> {
    vec![
        pod(
            "default",
            "server",
            "10.244.1.5",
            true,
            &[("app", "server")],
        ),
        pod(
            "default",
            "client",
            "10.244.2.7",
            false,
            &[("role", "client")],
        ),
        pod("default", "stranger", "10.244.2.8", false, &[]),
        pod("other", "peer", "10.244.3.9", false, &[("role", "client")]),
    ]
}

#[test]
fn no_policy_no_chains() {
    assert_eq!(compile(&[], &pods(), &namespaces()), Compiled::default());
}

#[test]
fn default_deny_ingress_drops_everything_to_selected_local_pods() {
    let deny = policy("default", "deny", json!({"podSelector": {}}));
    let compiled = compile(&[deny], &pods(), &namespaces());
    assert_eq!(
        compiled.jumps,
        ["ip daddr 10.244.1.5 jump ingress-0 comment \"default/server\""]
    );
    assert_eq!(
        compiled.chains,
        [("ingress-0".to_string(), vec!["drop".to_string()])]
    );
}

#[test]
fn pod_and_namespace_selectors_with_ports() {
    let allow = policy(
        "default",
        "allow-clients",
        json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"role": "client"}}},
                    {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                ],
                "ports": [{"port": 80}, {"port": "http"}, {"protocol": "UDP", "port": 53, "endPort": 60}],
            }],
        }),
    );
    let compiled = compile(&[allow], &pods(), &namespaces());
    assert_eq!(
        compiled.chains[0].1,
        [
            "ip saddr { 10.244.2.7 } tcp dport 80 accept",
            "ip saddr { 10.244.2.7 } tcp dport 8080 accept",
            "ip saddr { 10.244.2.7 } udp dport 53-60 accept",
            "ip saddr { 10.244.3.9 } tcp dport 80 accept",
            "ip saddr { 10.244.3.9 } tcp dport 8080 accept",
            "ip saddr { 10.244.3.9 } udp dport 53-60 accept",
            "drop",
        ]
    );
}

#[test]
fn both_selectors_in_one_peer_intersect() {
    let allow = policy(
        "default",
        "p",
        json!({
            "podSelector": {},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
                "podSelector": {"matchLabels": {"role": "client"}},
            }]}],
        }),
    );
    let compiled = compile(&[allow], &pods(), &namespaces());
    assert_eq!(
        compiled.chains[0].1,
        ["ip saddr { 10.244.3.9 } accept", "drop"]
    );
}

#[test]
fn ip_block_with_except_and_egress() {
    let egress = policy(
        "default",
        "egress",
        json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.2.0/24"]}}]},
                {"to": [{"ipBlock": {"cidr": "fd00::/64"}}]},
            ],
        }),
    );
    let compiled = compile(&[egress], &pods(), &namespaces());
    assert_eq!(
        compiled.jumps,
        ["ip saddr 10.244.1.5 jump egress-0 comment \"default/server\""]
    );
    assert_eq!(
        compiled.chains[0].1,
        [
            "ip daddr 10.0.0.0/8 ip daddr != { 10.244.2.0/24 } return",
            "drop"
        ]
    );
}

#[test]
fn egress_named_ports_resolve_on_destination_pods() {
    let egress = policy(
        "default",
        "egress",
        json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "egress": [{"ports": [{"port": "http"}]}],
        }),
    );
    let compiled = compile(&[egress], &pods(), &namespaces());
    // Default policyTypes with egress rules: Ingress and Egress (ingress: nothing allowed).
    assert_eq!(compiled.chains.len(), 2);
    assert_eq!(
        compiled.chains[0].1,
        [
            "ip daddr { 10.244.1.5, 10.244.2.7, 10.244.2.8, 10.244.3.9 } tcp dport 8080 return",
            "drop"
        ]
    );
    assert_eq!(
        compiled.chains[1],
        ("ingress-0".to_string(), vec!["drop".to_string()])
    );
    // Egress jumps come before ingress jumps.
    assert!(compiled.jumps[0].contains("egress-0"));
    assert!(compiled.jumps[1].contains("ingress-0"));
}

#[test]
fn empty_rule_allows_all_and_selector_matching_nothing_adds_nothing() {
    let allow_all = policy(
        "default",
        "all",
        json!({"podSelector": {}, "ingress": [{}]}),
    );
    let nobody = policy(
        "default",
        "nobody",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"x": "y"}}}]}]}),
    );
    let compiled = compile(&[allow_all, nobody], &pods(), &namespaces());
    assert_eq!(compiled.chains[0].1, ["accept", "drop"]);
}

#[test]
fn policies_of_other_namespaces_do_not_select() {
    let deny = policy("other", "deny", json!({"podSelector": {}}));
    assert_eq!(
        compile(&[deny], &pods(), &namespaces()),
        Compiled::default()
    );
}

#[test]
fn isolated_dual_stack_pods_lose_their_ipv6_traffic_in_that_direction() {
    let mut pods = pods();
    pods[0].ipv6 = Some("fd00:10:244:1::5".parse().unwrap());
    let deny = policy("default", "deny", json!({"podSelector": {}}));
    let compiled = compile(&[deny], &pods, &namespaces());
    assert_eq!(
        compiled.ipv6_drops,
        ["ip6 daddr fd00:10:244:1::5 drop comment \"default/server\""]
    );
    assert!(compile(&[], &pods, &namespaces()).ipv6_drops.is_empty());
}
