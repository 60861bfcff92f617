//! SIGHUP reloads the TLS certificate at once. In its own test binary:
//! the signal goes to the whole process.

// Tests state their expectations with `expect`: a failed one is the
// test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "it/common/mod.rs"]
mod common;

use std::time::Duration;

use common::certs::{Ca, temp_dir};
use common::{PATIENCE, TestServer};
use jobq::config::Config;
use jobq_client::{Client, ClientOptions};

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    // This process's own SIGHUP handler first, so the signal can never
    // take the test process down, whenever the server's watcher starts.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    let old_ca = Ca::new("old CA");
    let dir = temp_dir("sighup");
    let (cert, key) = old_ca.write(&dir, "server", "localhost");
    let server = TestServer::start_with(Config {
        tls_cert: Some(cert),
        tls_key: Some(key),
        // Long enough that only the signal can cause the reload.
        tls_reload_interval: Duration::from_secs(3600),
        ..Config::defaults()
    })
    .await;
    let address = format!("https://localhost:{}", server.addr.port());
    let connects = |ca: String| {
        let address = address.clone();
        async move {
            Client::connect_with(address, ClientOptions::new().tls_ca_pem(ca), Duration::ZERO)
                .await
                .is_ok()
        }
    };
    assert!(connects(old_ca.pem()).await);

    let new_ca = Ca::new("new CA");
    new_ca.write(&dir, "server", "localhost");
    let reloaded = tokio::time::timeout(PATIENCE, async {
        loop {
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success());
            hangups.recv().await;
            if connects(new_ca.pem()).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reloaded.is_ok(), "SIGHUP never reloaded the certificate");
    assert!(!connects(old_ca.pem()).await);
}
