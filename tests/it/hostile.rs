//! Hostile and malformed input over raw HTTP/2: the server answers each
//! with a gRPC status or closes the stream, never panics, and keeps
//! serving well-behaved clients, including during a flood of resets.

use std::time::Duration;

use crate::common::raw::{Ending, RawCall, grpc_frame};
use crate::common::{PATIENCE, TestServer, enqueue, job};
use bytes::{BufMut, Bytes, BytesMut};
use jobq::grpc::pb;
use tonic::Code;

const ENQUEUE: &str = "/jobq.v1.JobQueue/Enqueue";

/// A length-prefixed frame around raw bytes.
fn frame(compressed: bool, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_u8(u8::from(compressed));
    frame.put_u32(u32::try_from(body.len()).expect("small"));
    frame.put_slice(body);
    frame.freeze()
}

/// The server still works for a well-behaved client.
async fn still_serving(server: &TestServer) {
    let id = tokio::time::timeout(PATIENCE, enqueue(&mut server.client(), "fine", job("ok")))
        .await
        .expect("served in time");
    assert_eq!(id.len(), 26);
}

async fn send_raw(server: &TestServer, path: &str, bytes: Bytes) -> Ending {
    let mut call = RawCall::start(server.addr, path).await;
    call.send(bytes);
    call.finish().await
}

#[tokio::test]
async fn malformed_messages_get_a_status_naming_the_problem() {
    let server = TestServer::start().await;
    // The client's fault, so INVALID_ARGUMENT (tonic alone says INTERNAL).
    let cases: [(&str, Bytes, &str, Code); 5] = [
        (
            "garbage",
            frame(false, &[0xff, 0xff, 0xff, 0xff]),
            "decode",
            Code::InvalidArgument,
        ),
        (
            "truncated field",
            frame(false, &[0x0a, 0x10, b'a', b'b']),
            "decode",
            Code::InvalidArgument,
        ),
        (
            "wrong wire type",
            frame(false, &[0x08, 0x01]),
            "wire type",
            Code::InvalidArgument,
        ),
        (
            "invalid UTF-8 in a string",
            frame(false, &[0x0a, 0x02, 0xc3, 0x28]),
            "UTF-8",
            Code::InvalidArgument,
        ),
        (
            "compressed without an encoding",
            frame(true, &[0x0a, 0x00]),
            "compress",
            Code::InvalidArgument,
        ),
    ];
    for (name, bytes, needle, expected) in cases {
        match send_raw(&server, ENQUEUE, bytes).await {
            Ending::Status(code, message) => {
                assert_eq!(code, expected, "{name}: {message}");
                assert!(
                    message.to_lowercase().contains(&needle.to_lowercase()),
                    "{name}: {code:?} {message}"
                );
            }
            Ending::Closed(why) => panic!("{name}: closed without a status: {why}"),
        }
        still_serving(&server).await;
    }
    // None of it stored anything: only the well-behaved jobs are held.
    assert_eq!(server.jobs_held().await, 5);
}

#[tokio::test]
async fn a_giant_length_prefix_is_refused_before_its_body_is_sent() {
    let server = TestServer::start().await;
    let mut call = RawCall::start(server.addr, ENQUEUE).await;
    // Four gigabytes announced, none sent, and the body left open: the
    // answer can only come from the prefix.
    call.send(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
    match call.ending().await {
        Ending::Status(code, message) => {
            assert_eq!(code, Code::OutOfRange, "{message}");
            // The size, the limit and the flag that sets it.
            assert!(
                message.contains("4294967295-byte message")
                    && message.contains(&format!(
                        "limit of {} bytes",
                        jobq::config::Config::defaults().max_request_bytes
                    ))
                    && message.contains("--max-request-bytes"),
                "{message}"
            );
        }
        Ending::Closed(why) => panic!("closed without a status: {why}"),
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn an_oversized_message_on_a_stream_is_refused_naming_the_limit_and_its_flag() {
    let server = TestServer::start().await;
    for path in [
        "/jobq.v1.JobQueue/StreamEnqueue",
        "/jobq.v1.JobQueue/StreamLeases",
    ] {
        let mut call = RawCall::start(server.addr, path).await;
        call.send(Bytes::from_static(&[0, 0x7f, 0xff, 0xff, 0xff]));
        match call.ending().await {
            Ending::Status(code, message) => {
                assert_eq!(code, Code::OutOfRange, "{path}: {message}");
                assert!(
                    message.contains("2147483647-byte message")
                        && message.contains("--max-request-bytes"),
                    "{path}: {message}"
                );
            }
            Ending::Closed(why) => panic!("{path}: closed without a status: {why}"),
        }
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn a_payload_over_the_limit_gets_jobqs_own_message() {
    let server = TestServer::start().await;
    let request = pb::EnqueueRequest {
        queue: "big".into(),
        job: Some(pb::NewJob {
            payload: vec![7_u8; 1024 * 1024 + 1].into(),
            ..pb::NewJob::default()
        }),
        wait_for_room: false,
    };
    match send_raw(&server, ENQUEUE, grpc_frame(&request)).await {
        Ending::Status(code, message) => {
            assert_eq!(code, Code::InvalidArgument, "{message}");
            assert!(message.contains("job.payload"), "{message}");
            assert!(message.contains("1048576"), "{message}");
        }
        Ending::Closed(why) => panic!("closed without a status: {why}"),
    }
}

#[tokio::test]
async fn a_stream_that_never_reads_holds_up_no_one_not_even_shutdown() {
    let server = TestServer::start_with(jobq::config::Config {
        shutdown_grace: Duration::from_millis(500),
        ..jobq::config::Config::defaults()
    })
    .await;
    let jobs = (0..1000).map(|i| job(&format!("{i:0>200}"))).collect();
    server
        .client()
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "stuck".into(),
            jobs,
            wait_for_room: false,
        })
        .await
        .expect("enqueue");
    // A worker that opens a stream with room for every job, then reads
    // nothing, on a connection whose window fills.
    let mut call = RawCall::start(server.addr, "/jobq.v1.JobQueue/StreamLeases").await;
    call.send(grpc_frame(&pb::StreamLeasesRequest {
        kind: Some(pb::stream_leases_request::Kind::Open(pb::StreamOpen {
            queue: "stuck".into(),
            credits: 1000,
            lease_duration: None,
        })),
    }));
    crate::common::eventually_async("the stuck stream is attached", async || {
        server.workers("stuck").await == 1
    })
    .await;
    for _ in 0..20 {
        still_serving(&server).await;
    }
    // Its answers cannot be flushed, so shutdown ends it when the grace
    // period runs out, not later.
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown waited on the stuck stream")
        .expect("clean");
    drop(call);
}

#[tokio::test]
async fn a_flood_of_stream_resets_does_not_stop_other_clients() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let flood = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (h2, connection) = h2::client::handshake(tcp).await.expect("handshake");
        let connection = tokio::spawn(connection);
        let mut h2 = h2;
        let mut sent = 0;
        for _ in 0..20_000 {
            let Ok(ready) = h2.clone().ready().await else {
                break;
            };
            h2 = ready;
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}{ENQUEUE}"))
                .header("content-type", "application/grpc")
                .body(())
                .expect("request");
            let Ok((_, mut body)) = h2.send_request(request, false) else {
                break;
            };
            body.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
        drop(h2);
        let _ = connection.await;
        sent
    });
    // Meanwhile, on its own connection, a well-behaved client is served
    // every time it asks.
    while !flood.is_finished() {
        still_serving(&server).await;
    }
    let sent = flood.await.expect("flood task");
    assert!(sent > 0);
    still_serving(&server).await;
}

#[tokio::test]
async fn an_oversized_header_list_is_refused_and_the_server_carries_on() {
    let server = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (h2, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{ENQUEUE}", server.addr))
        .header("content-type", "application/grpc")
        .header("x-padding", "p".repeat(64 * 1024))
        .body(())
        .expect("request");
    let refused = match h2.send_request(request, true) {
        Err(_) => true,
        Ok((response, _)) => match tokio::time::timeout(PATIENCE, response)
            .await
            .expect("answered in time")
        {
            Err(_) => true,
            Ok(response) => response.status() != http::StatusCode::OK,
        },
    };
    assert!(refused, "a 64 KiB header list was accepted");
    still_serving(&server).await;
}
