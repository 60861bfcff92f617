//! What surrounds the JobQueue service: health, reflection, shutdown.

use std::time::Duration;

use crate::common::{TestServer, enqueue, job, lease};
use jobq::grpc::pb;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn health_of(server: &TestServer, service: &str) -> ServingStatus {
    HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status()
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let server = TestServer::start().await;
    assert_eq!(health_of(&server, "").await, ServingStatus::Serving);
    for service in ["jobq.v1.JobQueue", "jobq.v1.Admin"] {
        assert_eq!(health_of(&server, service).await, ServingStatus::Serving);
    }
}

#[tokio::test]
async fn reflection_lists_and_describes_the_service() {
    let server = TestServer::start().await;
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let requests = tokio_stream::iter([
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "jobq.v1.JobQueue".into(),
            )),
        },
    ]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();
    let listed = responses.next().await.expect("answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("expected a service list: {listed:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"jobq.v1.JobQueue"), "{names:?}");
    assert!(names.contains(&"jobq.v1.Admin"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let described = responses.next().await.expect("answer").expect("ok");
    let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response else {
        panic!("expected descriptors: {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn shutdown_turns_health_off_ends_long_polls_and_exits_cleanly() {
    let mut server = TestServer::start().await;
    let mut watch = HealthClient::new(server.channel.clone())
        .watch(HealthCheckRequest {
            service: "jobq.v1.JobQueue".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("status").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);

    let mut worker = server.client();
    let poll = tokio::spawn(async move {
        worker
            .lease(pb::LeaseRequest {
                queue: "q".into(),
                max_jobs: 1,
                lease_duration: None,
                wait_time: crate::common::secs(60),
            })
            .await
    });
    crate::common::eventually("the long-poll waits on the server", || {
        server.long_polls("q") == 1
    })
    .await;
    server.begin_shutdown();

    let next = watch.next().await.expect("status").expect("ok");
    assert_eq!(next.status(), ServingStatus::NotServing);
    let polled = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("long-poll ended early, not after its 60 s")
        .expect("join");
    match polled {
        Ok(response) => assert!(response.into_inner().leases.is_empty()),
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable),
    }
}

#[tokio::test]
async fn shutdown_returns_ok_and_refuses_new_work_meanwhile() {
    let mut config = jobq::config::Config::defaults();
    config.shutdown_grace = Duration::from_secs(5);
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("left behind")).await;
    assert_eq!(lease(&mut client, "q", 1, 0).await.len(), 1);
    drop(client);
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("stops within the grace period")
        .expect("clean exit");
}

#[tokio::test]
async fn an_idle_connection_does_not_hold_shutdown_for_the_grace_period() {
    let mut config = jobq::config::Config::defaults();
    config.shutdown_grace = Duration::from_secs(120);
    let server = TestServer::start_with(config).await;
    // A client that connected, made a call and keeps its connection open.
    let mut client = server.client();
    enqueue(&mut client, "q", job("x")).await;
    let kept = client.clone();
    tokio::time::timeout(crate::common::PATIENCE, server.shutdown())
        .await
        .expect("shutdown ends with the last call, not with the grace period")
        .expect("clean exit");
    drop(kept);
}

#[tokio::test]
async fn a_socket_that_never_speaks_does_not_hold_shutdown_either() {
    let mut config = jobq::config::Config::defaults();
    config.shutdown_grace = Duration::from_secs(120);
    let server = TestServer::start_with(config).await;
    // Connected, and silent: not even the HTTP/2 preface.
    let silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // A preface and nothing more: no stream, ever.
    let mut preface = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    tokio::time::timeout(crate::common::PATIENCE, server.shutdown())
        .await
        .expect("shutdown ends with the last call, not with the grace period")
        .expect("clean exit");
    drop((silent, preface));
}
