//! `--max-connections`: connections past the limit are closed at once, and
//! a place freed by a closed connection is taken again.

use std::time::Duration;

use jobq::config::Config;
use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use tonic::transport::{Channel, Endpoint};

use crate::common::raw::{Ending, RawCall, grpc_frame};
use crate::common::{PATIENCE, TestServer, job};

async fn connect(server: &TestServer) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect_timeout(PATIENCE)
        .connect()
        .await
}

async fn enqueue(channel: Channel) -> Result<(), tonic::Status> {
    let request = pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(job("x")),
        wait_for_room: false,
    };
    JobQueueClient::new(channel)
        .enqueue(request)
        .await
        .map(drop)
}

#[tokio::test]
async fn a_connection_past_the_limit_is_closed_and_a_freed_place_is_taken_again() {
    let config = Config {
        max_connections: 2,
        ..Config::defaults()
    };
    let server = TestServer::start_with(config).await;
    let first = connect(&server).await.expect("first connection");
    let second = connect(&server).await.expect("second connection");
    enqueue(first.clone())
        .await
        .expect("first connection serves");
    enqueue(second.clone())
        .await
        .expect("second connection serves");

    // The third is accepted by the kernel and closed by the server: the
    // handshake or the first call fails, quickly.
    let third = tokio::time::timeout(PATIENCE, async {
        match connect(&server).await {
            Ok(channel) => enqueue(channel).await.map_err(|s| s.to_string()),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
    .expect("refused at once, not left hanging");
    assert!(third.is_err(), "a third connection was served: {third:?}");

    // Closing one frees its place for a new connection.
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let served = match connect(&server).await {
            Ok(channel) => enqueue(channel).await.is_ok(),
            Err(_) => false,
        };
        if served {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed place was never taken again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    enqueue(second)
        .await
        .expect("the second connection still serves");
}

#[tokio::test]
async fn a_connection_that_does_not_handshake_in_time_is_closed_and_frees_its_place() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = Config::defaults();
    config.handshake_timeout = Duration::from_millis(200);
    config.max_connections = 2;
    let server = TestServer::start_with(config).await;
    // Silent, and the preface alone: both closed by the server.
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut half = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    half.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    for socket in [&mut silent, &mut half] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut rest))
            .await
            .expect("the server closes it");
        // Closed (with or without a reset): what it wrote is no more than
        // its own preface.
        let _ = read;
        assert!(rest.len() < 100, "{rest:?}");
    }
    // Their places are free again, and a connection that handshook keeps
    // being served on the same connection well past the deadline.
    let request = grpc_frame(&pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(job("x")),
        wait_for_room: false,
    });
    let connection = RawCall::start(server.addr, "/jobq.v1.JobQueue/Enqueue").await;
    let mut first = connection.sibling("/jobq.v1.JobQueue/Enqueue").await;
    first.send(request.clone());
    assert!(matches!(
        first.finish().await,
        Ending::Status(tonic::Code::Ok, _)
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut later = connection.sibling("/jobq.v1.JobQueue/Enqueue").await;
    later.send(request);
    assert!(matches!(
        later.finish().await,
        Ending::Status(tonic::Code::Ok, _)
    ));
}
