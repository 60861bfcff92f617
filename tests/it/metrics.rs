//! `/metrics` after a known sequence of operations.

use crate::common::{PATIENCE, TestServer, ack, enqueue, job, lease, open_stream, scrape};
use jobq::grpc::pb;

fn value(metrics: &str, series: &str) -> f64 {
    find(metrics, series).unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
}

fn find(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// Scrapes until `settled` holds of the page (at once on the in-memory
/// store), for at most [`PATIENCE`].
async fn scrape_until(server: &TestServer, settled: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m = scrape(server).await;
        if settled(&m) || tokio::time::Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn counters_and_gauges_match_what_happened() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for i in 0..3 {
        enqueue(&mut client, "emails", job(&i.to_string())).await;
    }
    enqueue(&mut client, "sms", job("x")).await;
    let invalid = client
        .enqueue(pb::EnqueueRequest {
            queue: "bad name".into(),
            job: Some(job("x")),
            wait_for_room: false,
        })
        .await;
    assert!(invalid.is_err());
    let leased = lease(&mut client, "emails", 2, 0).await;
    ack(&mut client, "emails", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    client
        .nack(pb::NackRequest {
            queue: "emails".into(),
            lease_token: leased[1].lease_token.clone(),
            dead_letter: true,
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack");
    // Held open to the end: its lease and the stream are in the gauges.
    let mut stream = open_stream(&server, "sms", 1).await;
    stream.next_lease().await;

    // A database store refreshes its counts every few seconds.
    let m = scrape_until(&server, |m| {
        find(m, r#"jobq_queue_ready_jobs{queue="emails"}"#) == Some(1.0)
            && find(m, r#"jobq_queue_leased_jobs{queue="sms"}"#) == Some(1.0)
            && find(m, r#"jobq_queue_dead_jobs{queue="emails"}"#) == Some(1.0)
            && find(m, r#"jobq_worker_streams{queue="sms"}"#) == Some(1.0)
    })
    .await;
    for (series, expected) in [
        (r#"jobq_jobs_enqueued_total{queue="emails"}"#, 3.0),
        (r#"jobq_jobs_enqueued_total{queue="sms"}"#, 1.0),
        (r#"jobq_jobs_leased_total{queue="emails"}"#, 2.0),
        (r#"jobq_jobs_leased_total{queue="sms"}"#, 1.0),
        (r#"jobq_jobs_acked_total{queue="emails"}"#, 1.0),
        (r#"jobq_jobs_nacked_total{queue="emails"}"#, 1.0),
        (r#"jobq_jobs_expired_total{queue="emails"}"#, 0.0),
        (r#"jobq_jobs_dead_lettered_total{queue="emails"}"#, 1.0),
        (r#"jobq_queue_ready_jobs{queue="emails"}"#, 1.0),
        (r#"jobq_queue_scheduled_jobs{queue="emails"}"#, 0.0),
        (r#"jobq_queue_leased_jobs{queue="emails"}"#, 0.0),
        (r#"jobq_queue_dead_jobs{queue="emails"}"#, 1.0),
        (r#"jobq_queue_leased_jobs{queue="sms"}"#, 1.0),
        (r#"jobq_worker_streams{queue="sms"}"#, 1.0),
        (r#"jobq_worker_streams{queue="emails"}"#, 0.0),
        (r#"jobq_queue_oldest_ready_age_seconds{queue="sms"}"#, 0.0),
        (r#"jobq_job_wait_seconds_count{queue="emails"}"#, 2.0),
        (r#"jobq_job_wait_seconds_count{queue="sms"}"#, 1.0),
        (r#"jobq_job_processing_seconds_count{queue="emails"}"#, 1.0),
        (
            r#"jobq_rpc_requests_total{method="Enqueue",code="OK"}"#,
            4.0,
        ),
        (
            r#"jobq_rpc_requests_total{method="Enqueue",code="INVALID_ARGUMENT"}"#,
            1.0,
        ),
        (r#"jobq_rpc_requests_total{method="Lease",code="OK"}"#, 1.0),
        (r#"jobq_rpc_requests_total{method="Ack",code="OK"}"#, 1.0),
        (r#"jobq_rpc_requests_total{method="Nack",code="OK"}"#, 1.0),
        (r#"jobq_rpc_duration_seconds_count{method="Enqueue"}"#, 5.0),
    ] {
        assert_eq!(value(&m, series), expected, "{series}");
    }
    // One job of emails is still ready: it has waited a little, not long.
    let age = value(&m, r#"jobq_queue_oldest_ready_age_seconds{queue="emails"}"#);
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(!m.contains("job_id"), "no job ids in labels");
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_the_server_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/jobq-dashboard.json"))
            .expect("valid JSON");
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("x")).await;
    let leased = lease(&mut client, "q", 1, 0).await;
    ack(&mut client, "q", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    let exported = scrape(&server).await;

    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut checked = 0;
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
    {
        let expr = target["expr"].as_str().expect("expr");
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("jobq_"))
        {
            assert!(
                exported.lines().any(|line| line.starts_with(name)),
                "the dashboard queries {name}, which /metrics does not export"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

#[tokio::test]
async fn shutdown_reports_the_jobs_it_will_drop() {
    // Only the in-memory store drops jobs at shutdown.
    let mut server = TestServer::start_memory_with(jobq::config::Config {
        shutdown_grace: std::time::Duration::from_secs(10),
        ..jobq::config::Config::defaults()
    })
    .await;
    let mut client = server.client();
    for payload in ["a", "b", "c"] {
        enqueue(&mut client, "doomed", job(payload)).await;
    }
    let before = scrape(&server).await;
    assert!(
        before.contains("jobq_shutdown_jobs_in_memory 0\n"),
        "{before}"
    );
    let healthy = crate::common::http_get(&server, "/healthz").await;
    assert!(
        healthy.contains(" 200 ") && healthy.ends_with("SERVING\n"),
        "{healthy}"
    );
    // A call whose body never ends holds the grace period open, so the
    // metrics endpoint can be read during shutdown.
    let mut held =
        crate::common::raw::RawCall::start(server.addr, "/jobq.v1.JobQueue/Enqueue").await;
    held.send(bytes::Bytes::from_static(&[0, 0, 0, 0, 9]));
    // A health check on the same connection, answered: so the server has
    // the held call too.
    let mut check = held.sibling("/grpc.health.v1.Health/Check").await;
    check.send(crate::common::raw::grpc_frame(
        &tonic_health::pb::HealthCheckRequest::default(),
    ));
    assert!(matches!(
        check.finish().await,
        crate::common::raw::Ending::Status(tonic::Code::Ok, _)
    ));
    server.begin_shutdown();
    crate::common::eventually_async("the gauge counts the 3 jobs", || async {
        scrape(&server)
            .await
            .contains("jobq_shutdown_jobs_in_memory 3\n")
    })
    .await;
    let stopping = crate::common::http_get(&server, "/healthz").await;
    assert!(
        stopping.contains(" 503 ") && stopping.ends_with("NOT_SERVING\n"),
        "{stopping}"
    );
    drop(held);
}

#[tokio::test]
async fn a_deleted_queue_leaves_no_series_behind() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "gone", job("x")).await;
    let leased = lease(&mut client, "gone", 1, 0).await;
    ack(&mut client, "gone", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    let before = scrape(&server).await;
    assert!(before.contains(r#"jobq_job_wait_seconds_count{queue="gone"}"#));
    assert!(before.contains(r#"jobq_job_processing_seconds_count{queue="gone"}"#));

    crate::common::admin(&server)
        .delete_queue(pb::DeleteQueueRequest {
            queue: "gone".into(),
            force: false,
        })
        .await
        .expect("delete");
    let after = scrape(&server).await;
    let left: Vec<&str> = after
        .lines()
        .filter(|line| line.contains(r#"queue="gone""#))
        .collect();
    assert!(left.is_empty(), "series of the deleted queue: {left:#?}");
}

#[tokio::test]
async fn past_metrics_max_queues_the_rest_are_summed_so_a_scrape_stays_bounded() {
    let mut config = jobq::config::Config::defaults();
    config.metrics_max_queues = 3;
    config.max_queues = 2_000;
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    for n in 0..8 {
        let queue = format!("q{n}");
        for _ in 0..=n {
            enqueue(&mut client, &queue, job("x")).await;
        }
    }
    // Leased from a queue past the limit: its processing time lands in
    // the summed histogram.
    let leased = lease(&mut client, "q7", 1, 0).await;
    ack(&mut client, "q7", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    let m = scrape_until(&server, |m| {
        m.contains(r#"jobq_queue_ready_jobs{queue="(other)"} 29"#)
    })
    .await;
    let labels: std::collections::BTreeSet<&str> = m
        .lines()
        .filter(|l| l.starts_with("jobq_queue_ready_jobs{"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["(other)", "q0", "q1", "q2"],
        "the first three queues created, and the rest together"
    );
    // q3..q7 hold 4 + 5 + 6 + 7 + 8 jobs, one of q7's acked.
    assert_eq!(value(&m, r#"jobq_queue_ready_jobs{queue="(other)"}"#), 29.0);
    assert_eq!(
        value(&m, r#"jobq_jobs_enqueued_total{queue="(other)"}"#),
        30.0
    );
    assert_eq!(
        value(&m, r#"jobq_job_processing_seconds_count{queue="(other)"}"#),
        1.0
    );
    assert!(!m.contains(r#"queue="q7""#), "{m}");

    // As many queues as --max-queues allows: the scrape's size is that of
    // the named ones.
    for n in 8..2_000 {
        enqueue(&mut client, &format!("q{n}"), job("x")).await;
    }
    let m = scrape_until(&server, |m| {
        m.contains(r#"jobq_queue_ready_jobs{queue="(other)"} 2021"#)
    })
    .await;
    assert!(
        m.len() < 64 << 10,
        "a {}-byte scrape for 2000 queues",
        m.len()
    );
    assert_eq!(
        value(&m, r#"jobq_queue_ready_jobs{queue="(other)"}"#),
        29.0 + 1992.0
    );
}
