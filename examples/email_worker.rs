//! The worker side of the email scenario: "sends" queued emails through a
//! flaky SMTP server that fails now and then, so some jobs are retried with
//! backoff, and mail to a bad address is dead-lettered at once.
//!
//! Run a server (`cargo run --release`), then:
//! `cargo run --example email_worker` (stop it with Ctrl-C or SIGTERM; it
//! finishes the emails in flight first). The container image carries it as
//! `jobq-email-worker`, for the Helm chart's example worker. It reads
//! `JOBQ_SERVER`, `JOBQ_QUEUE`, and for a secured server `JOBQ_TOKEN` and
//! `JOBQ_CLIENT_TLS_CA`. With `JOBQ_WORKER_HEALTH_LISTEN` (say
//! `0.0.0.0:8081`) it answers probes over HTTP: `GET /livez` is 200 while
//! the process runs, `GET /readyz` 200 while its lease stream is open and
//! 503 while it reconnects.

use std::time::Duration;

use jobq_client::{Client, ClientError, ClientOptions, Delivery, JobError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server =
        std::env::var("JOBQ_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".to_string());
    let queue = std::env::var("JOBQ_QUEUE").unwrap_or_else(|_| "emails".to_string());
    // A worker token and the CA of a TLS server, when the server asks.
    let mut options = ClientOptions::new();
    if let Ok(token) = std::env::var("JOBQ_TOKEN") {
        options = options.token(&token)?;
    }
    if let Ok(ca) = std::env::var("JOBQ_CLIENT_TLS_CA") {
        let pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("cannot read {ca}: {e}"));
        options = options.tls_ca_pem(pem);
    }
    let (connected, readiness) = tokio::sync::watch::channel(false);
    if let Ok(addr) = std::env::var("JOBQ_WORKER_HEALTH_LISTEN") {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr} for probes: {e}"));
        tokio::spawn(serve_probes(listener, readiness));
    }
    let client = Client::connect_with(server, options, Duration::from_secs(30)).await?;
    println!("sending emails from queue {queue}; Ctrl-C to stop");
    let stats = client
        .worker(queue)
        .concurrency(4)
        .shutdown_grace(Duration::from_secs(5))
        .report_connected(connected)
        .run(send_email, stop_signal())
        .await;
    println!("stopped: {stats:?}");
    Ok(())
}

/// Liveness and readiness over HTTP, for Kubernetes' probes.
async fn serve_probes(
    listener: tokio::net::TcpListener,
    connected: tokio::sync::watch::Receiver<bool>,
) {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route("/livez", axum::routing::get(|| async { "alive\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = *connected.borrow();
                async move {
                    if ready {
                        (StatusCode::OK, "connected\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not connected to jobq\n")
                    }
                }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("probe endpoint failed: {error}");
    }
}

/// Ctrl-C, or SIGTERM from Kubernetes stopping the pod. A process that
/// cannot install the handler cannot stop cleanly: it fails at start.
#[allow(clippy::expect_used)]
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn send_email(job: Delivery) -> Result<(), JobError> {
    let to = String::from_utf8_lossy(&job.payload).into_owned();
    let template = job.metadata.get("template").cloned().unwrap_or_default();
    if to.starts_with("mallory@") {
        println!("  {template} to {to}: address rejected; dead-lettering");
        return Err(JobError::permanent("550 no such mailbox"));
    }
    // Talking to SMTP takes a while, and one try in three times out.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if rand::random::<f64>() < 1.0 / 3.0 {
        println!(
            "  {template} to {to}: SMTP timed out (attempt {}/{}); will retry",
            job.attempt, job.max_attempts
        );
        return Err(JobError::retry("421 timeout talking to smtp.example.com"));
    }
    println!("  {template} to {to}: sent (attempt {})", job.attempt);
    Ok(())
}
