//! Bearer tokens with roles, TLS and mutual TLS, and reflection switched
//! off, against a real server.

use std::time::Duration;

use crate::common::certs::{Ca, temp_dir};
use crate::common::{PATIENCE, TestServer, job};
use jobq::config::Config;
use jobq::grpc::pb;
use jobq_client::{Client, ClientOptions};
use tonic::Code;
use tonic::transport::Channel;

const PRODUCER: &str = "producer-token-0123456789";
const WORKER: &str = "worker-token-0123456789ab";
const ADMIN: &str = "admin-token-0123456789abc";

async fn server_with_tokens() -> TestServer {
    let dir = temp_dir("tokens");
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!("# role token\nproducer {PRODUCER}\nworker {WORKER}\n\nadmin {ADMIN}  # ops\n"),
    )
    .expect("write tokens");
    TestServer::start_with(Config {
        auth_tokens_file: Some(file),
        ..Config::defaults()
    })
    .await
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    request
}

async fn enqueue_code(server: &TestServer, token: Option<&str>) -> Code {
    let request = pb::EnqueueRequest {
        queue: "secure".into(),
        job: Some(job("x")),
        wait_for_room: false,
    };
    match server.client().enqueue(with_token(request, token)).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn lease_code(server: &TestServer, token: Option<&str>) -> Code {
    let request = pb::LeaseRequest {
        queue: "secure".into(),
        max_jobs: 1,
        lease_duration: None,
        wait_time: None,
    };
    match server.client().lease(with_token(request, token)).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn admin_code(server: &TestServer, token: Option<&str>) -> Code {
    let request = pb::ListQueuesRequest::default();
    match crate::common::admin(server)
        .list_queues(with_token(request, token))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn each_role_reaches_its_methods_and_is_refused_the_rest() {
    let server = server_with_tokens().await;
    assert_eq!(enqueue_code(&server, Some(PRODUCER)).await, Code::Ok);
    assert_eq!(
        lease_code(&server, Some(PRODUCER)).await,
        Code::PermissionDenied
    );
    assert_eq!(
        admin_code(&server, Some(PRODUCER)).await,
        Code::PermissionDenied
    );

    assert_eq!(
        enqueue_code(&server, Some(WORKER)).await,
        Code::PermissionDenied
    );
    assert_eq!(lease_code(&server, Some(WORKER)).await, Code::Ok);
    assert_eq!(
        admin_code(&server, Some(WORKER)).await,
        Code::PermissionDenied
    );

    assert_eq!(enqueue_code(&server, Some(ADMIN)).await, Code::Ok);
    assert_eq!(lease_code(&server, Some(ADMIN)).await, Code::Ok);
    assert_eq!(admin_code(&server, Some(ADMIN)).await, Code::Ok);
}

#[tokio::test]
async fn missing_and_wrong_tokens_are_unauthenticated_but_probes_stay_open() {
    let server = server_with_tokens().await;
    assert_eq!(enqueue_code(&server, None).await, Code::Unauthenticated);
    assert_eq!(
        enqueue_code(&server, Some("not-a-token-at-all-xx")).await,
        Code::Unauthenticated
    );
    assert_eq!(admin_code(&server, None).await, Code::Unauthenticated);
    let status = server
        .client()
        .enqueue(pb::EnqueueRequest::default())
        .await
        .expect_err("no token");
    assert!(status.message().contains("Bearer"), "{}", status.message());

    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "jobq.v1.JobQueue".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(health.status, 1);
    assert!(reflection_lists_services(&server.channel).await);
}

#[tokio::test]
async fn the_client_and_worker_send_their_tokens() {
    let server = server_with_tokens().await;
    let address = format!("http://{}", server.addr);
    let connect = |token: &'static str| {
        let address = address.clone();
        async move {
            let options = ClientOptions::new().token(token).expect("token");
            Client::connect_with(address, options, PATIENCE)
                .await
                .expect("connect")
        }
    };
    let producer = connect(PRODUCER).await;
    producer
        .enqueue("secure", "streamed")
        .send()
        .await
        .expect("stream enqueue with a producer token");
    producer
        .enqueue("secure", "unary")
        .send_unary()
        .await
        .expect("unary enqueue with a producer token");
    let refused = producer
        .lease("secure", 1, None, Duration::ZERO)
        .await
        .expect_err("a producer may not lease");
    assert_eq!(
        refused.status().map(tonic::Status::code),
        Some(Code::PermissionDenied)
    );

    let worker = connect(WORKER).await;
    let done = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let seen = std::sync::Arc::clone(&done);
    let stats = worker
        .worker("secure")
        .run(
            move |_job| {
                seen.add_permits(1);
                async { Ok(()) }
            },
            async {
                let _ = done.acquire_many(2).await.expect("open");
            },
        )
        .await;
    assert_eq!(stats.succeeded, 2);
}

async fn reflection_lists_services(channel: &Channel) -> bool {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let Ok(response) = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
    else {
        return false;
    };
    let mut stream = response.into_inner();
    matches!(stream.message().await, Ok(Some(_)))
}

#[tokio::test]
async fn reflection_can_be_switched_off() {
    let server = TestServer::start_with(Config {
        reflection: false,
        ..Config::defaults()
    })
    .await;
    assert!(!reflection_lists_services(&server.channel).await);
    let on = TestServer::start().await;
    assert!(reflection_lists_services(&on.channel).await);
}

/// A TLS server for `localhost`, with client certificates required when
/// `client_ca` is given.
async fn tls_server(ca: &Ca, client_ca: Option<&Ca>) -> TestServer {
    let dir = temp_dir("tls");
    let (cert, key) = ca.write(&dir, "server", "localhost");
    let client_ca = client_ca.map(|c| {
        let path = dir.join("clients.pem");
        std::fs::write(&path, c.pem()).expect("write");
        path
    });
    TestServer::start_with(Config {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca: client_ca,
        ..Config::defaults()
    })
    .await
}

async fn tls_enqueue(server: &TestServer, options: ClientOptions) -> Result<String, Code> {
    let address = format!("https://localhost:{}", server.addr.port());
    let client = Client::connect_with(address, options, Duration::ZERO)
        .await
        .map_err(|_| Code::Unavailable)?;
    client
        .enqueue("tls", "secret")
        .send_unary()
        .await
        .map_err(|e| e.status().map_or(Code::Unavailable, tonic::Status::code))
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_only() {
    let ca = Ca::new("jobq test CA");
    let server = tls_server(&ca, None).await;
    tls_enqueue(&server, ClientOptions::new().tls_ca_pem(ca.pem()))
        .await
        .expect("a client trusting the CA");
    let stranger = Ca::new("another CA");
    assert!(
        tls_enqueue(&server, ClientOptions::new().tls_ca_pem(stranger.pem()))
            .await
            .is_err()
    );
    // Plain text on a TLS port gets nowhere.
    assert!(enqueue_code(&server, None).await != Code::Ok);
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_its_ca() {
    let ca = Ca::new("jobq test CA");
    let clients = Ca::new("jobq clients CA");
    let server = tls_server(&ca, Some(&clients)).await;
    let trusting = || ClientOptions::new().tls_ca_pem(ca.pem());
    assert!(tls_enqueue(&server, trusting()).await.is_err());
    let (cert, key) = Ca::new("impostor CA").issue("worker-1");
    assert!(
        tls_enqueue(&server, trusting().tls_identity_pem(cert, key))
            .await
            .is_err()
    );
    let (cert, key) = clients.issue("worker-1");
    tls_enqueue(&server, trusting().tls_identity_pem(cert, key))
        .await
        .expect("a client with a certificate from the clients' CA");
}

#[tokio::test]
async fn a_changed_certificate_is_used_for_new_connections_without_a_restart() {
    let old_ca = Ca::new("old CA");
    let dir = temp_dir("reload");
    let (cert, key) = old_ca.write(&dir, "server", "localhost");
    let server = TestServer::start_with(Config {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_reload_interval: Duration::from_millis(20),
        ..Config::defaults()
    })
    .await;
    let address = format!("https://localhost:{}", server.addr.port());
    let before = Client::connect_with(
        address.clone(),
        ClientOptions::new().tls_ca_pem(old_ca.pem()),
        Duration::ZERO,
    )
    .await
    .expect("connect with the old CA");
    before
        .enqueue("tls", "before")
        .send_unary()
        .await
        .expect("enqueue");

    let new_ca = Ca::new("new CA");
    new_ca.write(&dir, "server", "localhost");
    let reloaded = tokio::time::timeout(PATIENCE, async {
        loop {
            if tls_enqueue(&server, ClientOptions::new().tls_ca_pem(new_ca.pem()))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reloaded.is_ok(), "the new certificate was never served");
    // New connections no longer get the old certificate...
    assert!(
        tls_enqueue(&server, ClientOptions::new().tls_ca_pem(old_ca.pem()))
            .await
            .is_err()
    );
    // ... while the connection made before the change carries on.
    before
        .enqueue("tls", "after")
        .send_unary()
        .await
        .expect("the old connection still works");
}
