//! Forwarding to upstream resolvers: the query's bytes go out unchanged (same ID,
//! same EDNS) and the reply comes back unchanged, over UDP or TCP as the client asked.
//! The cluster DNS forwards to the nameservers of its pod's resolv.conf (the node's
//! resolver); the node's relay (`relay`) forwards to Docker's embedded DNS.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next is tried (glibc's default
/// `timeout:5` is the client's budget for all of them).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest UDP reply accepted (EDNS allows up to 64 KiB).
const MAX_UDP: usize = 65535;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameserver is configured")]
    NoUpstream,
    #[error("upstream {server} did not answer: {reason}")]
    Failed { server: SocketAddr, reason: String },
}

/// The resolvers queries leave the cluster through.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    pub servers: Vec<SocketAddr>,
}

impl Upstream {
    /// The nameservers of a resolv.conf text, on port 53.
    pub fn from_resolv_conf(text: &str) -> Self {
        let servers = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some("nameserver")).then(|| fields.next())?
            })
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        Upstream { servers }
    }

    /// Sends `query` to each upstream in turn until one answers.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>, ForwardError> {
        let mut last = ForwardError::NoUpstream;
        for server in &self.servers {
            let attempt = async {
                if tcp {
                    exchange_tcp(*server, query).await
                } else {
                    exchange_udp(*server, query).await
                }
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(err)) => {
                    last = ForwardError::Failed {
                        server: *server,
                        reason: err.to_string(),
                    }
                }
                Err(_) => {
                    last = ForwardError::Failed {
                        server: *server,
                        reason: "timed out".into(),
                    }
                }
            }
        }
        Err(last)
    }
}

async fn exchange_udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the reply to this query (same ID) counts; a stray datagram is dropped.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let reply_len = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(reply_len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_from_resolv_conf() {
        let up = Upstream::from_resolv_conf(
            "# Docker\nnameserver 127.0.0.11\nnameserver fd00::1\nsearch x\noptions ndots:0\n",
        );
        assert_eq!(
            up.servers,
            [
                "127.0.0.11:53".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn udp_exchange_returns_the_matching_reply() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            // A stray reply with another ID first, then the real one.
            server.send_to(&[9, 9, 0], from).await.unwrap();
            let mut reply = buf[..n].to_vec();
            reply.push(42);
            server.send_to(&reply, from).await.unwrap();
        });
        let up = Upstream {
            servers: vec![addr],
        };
        let reply = up.exchange(&[1, 2, 3], false).await.unwrap();
        assert_eq!(reply, [1, 2, 3, 42]);
    }
}
