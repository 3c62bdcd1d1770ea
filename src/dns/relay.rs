//! The node's DNS relay: listens on the node's own IP, port 53 (UDP and TCP), and
//! passes every query to the node's resolvers. On the node's Docker network the node's
//! resolver is Docker's embedded DNS at 127.0.0.11, which only the node's own network
//! namespace can reach; a pod cannot. kind rewrites Docker's NAT rules for this; the
//! relay gets the same result without touching rules Docker owns: pods whose
//! resolv.conf points at the node (dnsPolicy `Default`, and the cluster DNS's own
//! forwarding) reach Docker's DNS through it, so node container names resolve.

use crate::forward::Upstream;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Relays queries on `ip`:53 to `upstream` until the process ends.
pub async fn run(ip: IpAddr, upstream: Upstream) -> std::io::Result<()> {
    let addr = SocketAddr::new(ip, 53);
    let udp = Arc::new(UdpSocket::bind(addr).await?);
    let tcp = TcpListener::bind(addr).await?;
    tracing::info!(%addr, upstream = ?upstream.servers, "DNS relay listening");
    let upstream = Arc::new(upstream);
    tokio::try_join!(serve_udp(udp, upstream.clone()), serve_tcp(tcp, upstream))?;
    Ok(())
}

async fn serve_udp(udp: Arc<UdpSocket>, upstream: Arc<Upstream>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = udp.recv_from(&mut buf).await?;
        let query = buf[..n].to_vec();
        let (udp, upstream) = (udp.clone(), upstream.clone());
        tokio::spawn(async move {
            match upstream.exchange(&query, false).await {
                Ok(reply) => {
                    if let Err(err) = udp.send_to(&reply, from).await {
                        tracing::debug!(%from, "relay reply: {err}");
                    }
                }
                Err(err) => tracing::debug!(%from, "relay: {err}"),
            }
        });
    }
}

async fn serve_tcp(tcp: TcpListener, upstream: Arc<Upstream>) -> std::io::Result<()> {
    loop {
        let (stream, from) = tcp.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(err) = relay_tcp(stream, &upstream).await {
                tracing::debug!(%from, "relay over TCP: {err}");
            }
        });
    }
}

/// Relays length-prefixed queries of one TCP connection until the client closes it.
async fn relay_tcp(mut stream: TcpStream, upstream: &Upstream) -> std::io::Result<()> {
    loop {
        let len = match stream.read_u16().await {
            Ok(len) => len,
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        };
        let mut query = vec![0u8; usize::from(len)];
        stream.read_exact(&mut query).await?;
        let reply = upstream
            .exchange(&query, true)
            .await
            .map_err(std::io::Error::other)?;
        let reply_len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        stream.write_all(&reply_len.to_be_bytes()).await?;
        stream.write_all(&reply).await?;
    }
}
