//! The node's own resolver configuration. Docker writes the node container's
//! `/etc/resolv.conf` (its embedded DNS, the host's search domains); the cluster
//! config's `networking.dnsSearch` replaces those search domains, as kind's node
//! entrypoint does, so the node and, through the kubelet, every pod search them.

use std::path::Path;

/// Replaces the node's search domains with `domains` (none at all for an empty list).
pub fn set_search(path: &Path, domains: &[String]) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    // Docker bind-mounts the file: write it in place, since a rename over a mount point
    // fails.
    std::fs::write(path, with_search(&text, domains))
}

fn with_search(text: &str, domains: &[String]) -> String {
    let mut out: String = text
        .lines()
        .filter(|line| line.split_whitespace().next() != Some("search"))
        .map(|line| format!("{line}\n"))
        .collect();
    if !domains.is_empty() {
        out.push_str(&format!("search {}\n", domains.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_line_is_replaced() {
        let text = "nameserver 127.0.0.11\nsearch host.test\noptions ndots:0\n";
        assert_eq!(
            with_search(text, &["a.test".into(), "b.test".into()]),
            "nameserver 127.0.0.11\noptions ndots:0\nsearch a.test b.test\n"
        );
        assert_eq!(
            with_search(text, &[]),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }
}
