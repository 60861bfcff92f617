//! A server whose engine is still opening (a journal being replayed):
//! health says NOT_SERVING and every call is refused with UNAVAILABLE until
//! it is open, then health says SERVING and calls go through; an engine
//! that fails to open stops the server with its error.

use std::sync::Arc;

use jobq::config::Config;
use jobq::engine::{MemoryEngine, Starting};
use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{PATIENCE, http_get_from, job};

struct Opening {
    grpc: String,
    metrics: std::net::SocketAddr,
    open: oneshot::Sender<anyhow::Result<()>>,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    engine: MemoryEngine,
}

/// A server whose engine opens when the test sends `Ok` on `open` (or
/// fails to, with `Err`).
async fn opening() -> Opening {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let grpc = format!("http://{}", listener.local_addr().expect("addr"));
    let metrics_addr = metrics_listener.local_addr().expect("addr");
    let config = Config::defaults();
    let engine = MemoryEngine::new(config.engine());
    let starting = Arc::new(Starting::new(
        "memory",
        "replaying the journal in /test".into(),
        config.engine().queue_defaults,
    ));
    let (open, opened) = oneshot::channel::<anyhow::Result<()>>();
    let (stop, stopped) = oneshot::channel::<()>();
    let opening = {
        let (starting, engine) = (Arc::clone(&starting), engine.clone());
        async move {
            opened.await.expect("the test opens or fails")?;
            starting.ready(Arc::new(engine));
            Ok(Box::pin(std::future::pending()) as jobq::server::StoreFailed)
        }
    };
    let served = tokio::spawn(jobq::server::serve_opening(
        starting,
        opening,
        Arc::new(jobq::metrics::Metrics::new()),
        config,
        jobq::server::Listeners {
            grpc: listener,
            metrics: Some(metrics_listener),
            web: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    Opening {
        grpc,
        metrics: metrics_addr,
        open,
        stop,
        served,
        engine,
    }
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(addr.to_string())
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn nothing_is_served_but_not_serving_until_the_engine_is_open() {
    let server = opening().await;
    let channel = channel(&server.grpc).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "jobq.v1.JobQueue", "jobq.v1.Admin"] {
        let status = health
            .check(check(service))
            .await
            .expect("health answers while opening")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::NotServing, "{service:?}");
    }
    let mut jobs = JobQueueClient::new(channel.clone());
    let refused = jobs
        .enqueue(pb::EnqueueRequest {
            queue: "emails".into(),
            job: Some(job("a")),
            ..pb::EnqueueRequest::default()
        })
        .await
        .expect_err("refused while opening");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused.message().contains("still starting")
            && refused.message().contains("replaying the journal in /test"),
        "{}",
        refused.message()
    );
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let refused = admin
        .list_queues(pb::ListQueuesRequest::default())
        .await
        .expect_err("refused while opening");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    let probe = http_get_from(server.metrics, "/healthz").await;
    assert!(probe.contains(" 503 "), "{probe}");
    assert_eq!(server.engine.jobs_held(), 0);
    // What a probe running `jobq health` sees.
    let checked = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(["health", "--server", &server.grpc])
        .output()
        .await
        .expect("jobq runs");
    assert!(!checked.status.success());
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout).trim(),
        "NOT_SERVING"
    );

    // Watching health sees it turn SERVING once the engine is open.
    let mut watch = health.watch(check("")).await.expect("watch").into_inner();
    let first = watch.message().await.expect("status").expect("one");
    assert_eq!(first.status(), ServingStatus::NotServing);
    server.open.send(Ok(())).expect("server waits");
    let next = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("health changes in time")
        .expect("status")
        .expect("one");
    assert_eq!(next.status(), ServingStatus::Serving);

    jobs.enqueue(pb::EnqueueRequest {
        queue: "emails".into(),
        job: Some(job("a")),
        ..pb::EnqueueRequest::default()
    })
    .await
    .expect("served once open");
    assert_eq!(server.engine.jobs_held(), 1);
    let probe = http_get_from(server.metrics, "/healthz").await;
    assert!(probe.contains(" 200 "), "{probe}");

    // An open watch would hold the connection through the grace period.
    drop(watch);
    server.stop.send(()).expect("server runs");
    server.served.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn an_engine_that_fails_to_open_stops_the_server_with_its_error() {
    let server = opening().await;
    server
        .open
        .send(Err(anyhow::anyhow!("bad record in 00000001.log at 4096")))
        .expect("server waits");
    let error = tokio::time::timeout(PATIENCE, server.served)
        .await
        .expect("stops in time")
        .expect("task")
        .expect_err("an error");
    assert!(
        error.to_string().contains("00000001.log at 4096"),
        "{error}"
    );
}

#[tokio::test]
async fn a_shutdown_while_opening_stops_without_waiting_for_it() {
    let server = opening().await;
    server.stop.send(()).expect("server runs");
    tokio::time::timeout(PATIENCE, server.served)
        .await
        .expect("stops in time")
        .expect("task")
        .expect("clean stop");
    drop(server.open);
}
