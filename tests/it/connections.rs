//! `--max-connections`: connections past the limit are closed at once, and
//! a place freed by a closed connection is taken again. Connections that
//! do not handshake, or sit with no call, are closed; request messages
//! that stall, or hold too many bytes unfinished, end their call.

use std::time::Duration;

use jobq::config::Config;
use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use tonic::transport::{Channel, Endpoint};

use crate::common::raw::{Ending, RawCall, grpc_frame};
use crate::common::{PATIENCE, TestServer, job, scrape};

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

#[tokio::test]
async fn a_connection_with_no_call_is_closed_after_the_idle_timeout_and_one_with_a_call_is_not() {
    let mut config = Config::defaults();
    config.idle_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await;
    // A long poll three times the idle timeout holds its connection open.
    let mut polling = RawCall::start(server.addr, "/jobq.v1.JobQueue/Lease").await;
    polling.send(grpc_frame(&pb::LeaseRequest {
        queue: "idle".into(),
        max_jobs: 1,
        wait_time: Some(prost_types::Duration {
            seconds: 0,
            nanos: 900_000_000,
        }),
        ..pb::LeaseRequest::default()
    }));
    polling.end();
    let mut idle = RawCall::start(server.addr, "/grpc.health.v1.Health/Check").await;
    idle.send(grpc_frame(&tonic_health::pb::HealthCheckRequest::default()));
    idle.end();
    assert!(matches!(
        idle.ending().await,
        Ending::Status(tonic::Code::Ok, _)
    ));
    // The connection whose only call ended is closed...
    assert!(
        idle.connection_closes().await,
        "the idle connection stayed open"
    );
    // ...while the long poll's, younger than the poll, was answered whole.
    assert!(matches!(
        polling.ending().await,
        Ending::Status(tonic::Code::Ok, _)
    ));
    // And once its call has ended, it is closed too.
    assert!(polling.connection_closes().await);
}

#[tokio::test]
async fn a_unary_request_that_stalls_ends_with_deadline_exceeded() {
    let mut config = Config::defaults();
    config.request_stall_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await;
    // A whole message, and the request never ends.
    let mut open = RawCall::start(server.addr, "/jobq.v1.JobQueue/Enqueue").await;
    open.send(grpc_frame(&pb::EnqueueRequest {
        queue: "stall".into(),
        job: Some(job("x")),
        wait_for_room: false,
    }));
    expect_status(
        open.ending().await,
        tonic::Code::DeadlineExceeded,
        &["did not end"],
    );
    // Half a message: the prefix promises 100 bytes, 1 comes.
    let mut half = RawCall::start(server.addr, "/jobq.v1.JobQueue/Enqueue").await;
    half.send(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 0x0a]));
    expect_status(
        half.ending().await,
        tonic::Code::DeadlineExceeded,
        &["--request-stall-timeout", "6 bytes"],
    );
    // No message at all.
    let mut none = RawCall::start(server.addr, "/jobq.v1.JobQueue/Enqueue").await;
    expect_status(
        none.ending().await,
        tonic::Code::DeadlineExceeded,
        &["did not come"],
    );
}

#[tokio::test]
async fn a_stream_may_pause_between_messages_but_not_inside_one() {
    let mut config = Config::defaults();
    config.request_stall_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await;
    let request = |id| {
        grpc_frame(&pb::StreamEnqueueRequest {
            request_id: id,
            queue: "stall".into(),
            job: Some(job("x")),
        })
    };
    let mut stream = RawCall::start(server.addr, "/jobq.v1.JobQueue/StreamEnqueue").await;
    stream.send(request(1));
    assert_eq!(stream.messages(1).await.len(), 1);
    // Quiet for twice the timeout between messages: fine.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.send(request(2));
    assert_eq!(stream.messages(1).await.len(), 1);
    // A message cut short: the stream ends.
    let cut = request(3);
    stream.send(cut.slice(..cut.len() - 1));
    expect_status(
        stream.ending().await,
        tonic::Code::DeadlineExceeded,
        &["--request-stall-timeout"],
    );
}

/// Asserts that a call ended with `code` and a message holding each of
/// `needles`.
fn expect_status(ending: Ending, code: tonic::Code, needles: &[&str]) {
    match ending {
        Ending::Status(got, message) if got == code => {
            for needle in needles {
                assert!(message.contains(needle), "{needle:?} not in {message}");
            }
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// The start of a message promising `len` bytes, and `sent` of them.
fn partial_message(len: u32, sent: usize) -> bytes::Bytes {
    let mut data = vec![0u8];
    data.extend_from_slice(&len.to_be_bytes());
    data.resize(5 + sent, 0x0a);
    data.into()
}

/// Waits until `jobq_pending_request_bytes` reads `bytes`: the server has
/// counted what was sent.
async fn pending_bytes_reach(server: &TestServer, bytes: usize) {
    let line = format!("jobq_pending_request_bytes {bytes}\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(server).await;
        if text.contains(&line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {line:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn unfinished_request_bytes_are_bounded_per_connection_and_in_total() {
    let mut config = Config::defaults();
    config.max_payload_bytes = 1000;
    config.max_request_bytes = 40_000;
    config.max_pending_request_bytes_per_connection = 40_000;
    config.max_pending_request_bytes = 80_000;
    let server = TestServer::start_with(config).await;
    let path = "/jobq.v1.JobQueue/Enqueue";
    // Each partial message is its 5-byte prefix and 30 000 (or 20 000)
    // bytes of its body.
    let part = 30_005;

    // One connection: one call holds 30 005 bytes, then 20 005 more by a
    // second call on the same connection passes the connection's limit.
    let mut first = RawCall::start(server.addr, path).await;
    first.send(partial_message(39_000, 30_000));
    pending_bytes_reach(&server, part).await;
    let mut second = first.sibling(path).await;
    second.send(partial_message(39_000, 20_000));
    expect_status(
        second.ending().await,
        tonic::Code::ResourceExhausted,
        &["--max-pending-request-bytes-per-connection"],
    );
    // The refused call gave its bytes back.
    pending_bytes_reach(&server, part).await;

    // Other connections: the server's total passes its limit on the
    // third (3 × 30 005 > 80 000).
    let mut other = RawCall::start(server.addr, path).await;
    other.send(partial_message(39_000, 30_000));
    pending_bytes_reach(&server, 2 * part).await;
    let mut third = RawCall::start(server.addr, path).await;
    third.send(partial_message(39_000, 30_000));
    expect_status(
        third.ending().await,
        tonic::Code::ResourceExhausted,
        &["--max-pending-request-bytes ("],
    );
    pending_bytes_reach(&server, 2 * part).await;

    // Finishing the first call's message frees its bytes (the message is
    // not a valid request, so it is answered as the client's fault), and
    // a new call of the same size is held again.
    first.send(bytes::Bytes::from(vec![0x0a; 9_000]));
    assert!(matches!(
        first.finish().await,
        Ending::Status(tonic::Code::InvalidArgument, _)
    ));
    pending_bytes_reach(&server, part).await;
    let mut again = RawCall::start(server.addr, path).await;
    again.send(partial_message(39_000, 30_000));
    pending_bytes_reach(&server, 2 * part).await;
    // A closed connection gives its calls' bytes back.
    drop(other);
    drop(again);
    pending_bytes_reach(&server, 0).await;
}
