//! A worker whose network vanishes (no FIN, no RST) loses its stream to
//! the server's keepalive pings within seconds, and its lease goes back,
//! long before the lease itself would run out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{TestServer, eventually_async, job};
use jobq::config::Config;
use jobq::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards one direction until frozen, then holds the sockets open and
/// silent forever.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::Relaxed) {
            // The network is gone: nothing passes, nothing is closed.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to `target` that can be frozen.
async fn proxy(target: std::net::SocketAddr, frozen: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.expect("connect");
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Arc::clone(&frozen)));
            tokio::spawn(pump(sr, cw, Arc::clone(&frozen)));
        }
    });
    addr
}

#[tokio::test]
async fn a_vanished_workers_lease_comes_back_after_missed_pings() {
    let server = TestServer::start_with(Config {
        http2_keepalive_interval: Duration::from_millis(200),
        http2_keepalive_timeout: Duration::from_millis(300),
        ..Config::defaults()
    })
    .await;
    crate::common::enqueue(&mut server.client(), "pings", job("x")).await;

    let frozen = Arc::new(AtomicBool::new(false));
    let via = proxy(server.addr, Arc::clone(&frozen)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{via}"))
        .expect("uri")
        // The worker itself sends no pings: only the server's can notice.
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::StreamLeasesRequest {
        kind: Some(pb::stream_leases_request::Kind::Open(pb::StreamOpen {
            queue: "pings".into(),
            credits: 1,
            // Far longer than the test waits: expiry cannot explain a return.
            lease_duration: Some(Duration::from_secs(600).try_into().expect("duration")),
        })),
    })
    .await
    .expect("open");
    let mut stream = pb::job_queue_client::JobQueueClient::new(channel)
        .stream_leases(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let leased = stream.message().await.expect("ok").expect("a lease");
    assert!(matches!(
        leased.kind,
        Some(pb::stream_leases_response::Kind::Lease(_))
    ));
    assert_eq!(server.counts("pings").await.expect("queue").leased, 1);

    frozen.store(true, Ordering::Relaxed);
    eventually_async("the vanished worker's lease came back", async || {
        server
            .counts("pings")
            .await
            .is_some_and(|c| c.ready == 1 && c.leased == 0)
    })
    .await;
    drop((tx, stream));
}
