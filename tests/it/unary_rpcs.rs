//! Each JobQueue RPC against a real server.

use std::time::{Duration, SystemTime};

use crate::common::{TestServer, ack, enqueue, job, lease, millis, secs};
use jobq::grpc::pb;

#[tokio::test]
async fn enqueue_lease_ack_round_trip_keeps_every_field() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let before = SystemTime::now();
    let new = pb::NewJob {
        payload: b"welcome alice".to_vec().into(),
        metadata: [("content-type".to_string(), "text/plain".to_string())].into(),
        priority: 3,
        max_attempts: 4,
        ..pb::NewJob::default()
    };
    let id = enqueue(&mut client, "emails", new).await;
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let leases = lease(&mut client, "emails", 10, 0).await;
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    let job = lease.job.as_ref().expect("job");
    assert_eq!(job.id, id);
    assert_eq!(job.queue, "emails");
    assert_eq!(&job.payload[..], b"welcome alice");
    assert_eq!(job.metadata["content-type"], "text/plain");
    assert_eq!(job.priority, 3);
    assert_eq!(job.max_attempts, 4);
    assert_eq!(lease.attempt, 1);
    let enqueued = SystemTime::try_from(job.enqueue_time.expect("time")).expect("valid");
    assert!(enqueued >= before - Duration::from_secs(1));
    let deadline = SystemTime::try_from(lease.lease_deadline.expect("deadline")).expect("valid");
    let lease_left = deadline.duration_since(SystemTime::now()).expect("future");
    assert!(lease_left > Duration::from_secs(25) && lease_left <= Duration::from_secs(31));

    assert_eq!(
        ack(&mut client, "emails", vec![lease.lease_token.clone()])
            .await
            .expect("ack"),
        1
    );
    assert!(lease_jobs_now(&mut client, "emails").await.is_empty());
}

async fn lease_jobs_now(
    client: &mut pb::job_queue_client::JobQueueClient<tonic::transport::Channel>,
    queue: &str,
) -> Vec<pb::Lease> {
    lease(client, queue, 100, 0).await
}

#[tokio::test]
async fn batch_enqueue_returns_sorted_unique_ids_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let jobs = (0..50).map(|i| job(&format!("job-{i}"))).collect();
    let ids = client
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "q".into(),
            jobs,
            wait_for_room: false,
        })
        .await
        .expect("batch")
        .into_inner()
        .job_ids;
    assert_eq!(ids.len(), 50);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sortable by time");
    let leased = lease_jobs_now(&mut client, "q").await;
    let payloads: Vec<_> = leased
        .iter()
        .map(|l| String::from_utf8(l.job.as_ref().expect("job").payload.to_vec()).expect("utf-8"))
        .collect();
    let expected: Vec<_> = (0..50).map(|i| format!("job-{i}")).collect();
    assert_eq!(payloads, expected, "FIFO within one priority");
}

#[tokio::test]
async fn priority_beats_arrival_order() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for (payload, priority) in [("low", -5), ("normal", 0), ("urgent", 10)] {
        let new = pb::NewJob {
            priority,
            ..job(payload)
        };
        enqueue(&mut client, "q", new).await;
    }
    let order: Vec<_> = lease_jobs_now(&mut client, "q")
        .await
        .into_iter()
        .map(|l| l.job.expect("job").priority)
        .collect();
    assert_eq!(order, [10, 0, -5]);
}

#[tokio::test]
async fn delayed_job_is_held_back_until_its_time() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let delayed = pb::NewJob {
        schedule: Some(pb::new_job::Schedule::Delay(
            // Seconds, so a slow machine still leases before it is due.
            Duration::from_secs(3).try_into().expect("in range"),
        )),
        ..job("later")
    };
    let id = enqueue(&mut client, "q", delayed).await;
    let not_before = pb::NewJob {
        schedule: Some(pb::new_job::Schedule::NotBefore(
            (SystemTime::now() + Duration::from_secs(3600)).into(),
        )),
        ..job("in an hour")
    };
    enqueue(&mut client, "q", not_before).await;
    assert!(lease_jobs_now(&mut client, "q").await.is_empty());
    // The long-poll is woken by the queue's timer when the delay passes.
    let leases = lease(&mut client, "q", 10, 30).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].job.as_ref().expect("job").id, id);
}

#[tokio::test]
async fn expired_lease_is_redelivered_with_a_new_token_and_the_old_one_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let first = client
        .lease(pb::LeaseRequest {
            queue: "q".into(),
            max_jobs: 1,
            lease_duration: millis(100),
            wait_time: None,
        })
        .await
        .expect("lease")
        .into_inner()
        .leases
        .remove(0);
    // Long-poll until the lease runs out and the job comes back.
    let second = lease(&mut client, "q", 1, 30).await.remove(0);
    assert_eq!(
        second.job.as_ref().expect("job").id,
        first.job.as_ref().expect("job").id
    );
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_token, first.lease_token);

    let stale = ack(&mut client, "q", vec![first.lease_token]).await;
    assert_eq!(stale.expect_err("stale").code(), tonic::Code::NotFound);
    assert_eq!(
        ack(&mut client, "q", vec![second.lease_token])
            .await
            .expect("ack"),
        1
    );
}

#[tokio::test]
async fn nack_with_a_delay_schedules_the_retry_then() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let first = lease(&mut client, "q", 1, 0).await.remove(0);
    let response = client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: first.lease_token.clone(),
            retry_delay: millis(200),
            dead_letter: false,
            reason: "smtp 451".into(),
        })
        .await
        .expect("nack")
        .into_inner();
    assert_eq!(response.outcome(), pb::NackOutcome::RetryScheduled);
    let retry = SystemTime::try_from(response.retry_time.expect("time")).expect("valid");
    assert!(retry > SystemTime::now() - Duration::from_secs(1));
    assert!(lease_jobs_now(&mut client, "q").await.is_empty());
    let again = lease(&mut client, "q", 1, 30).await.remove(0);
    assert_eq!(again.attempt, 2);
}

#[tokio::test]
async fn nack_without_a_delay_uses_the_backoff() {
    let mut config = jobq::config::Config::defaults();
    config.backoff_base = Duration::from_secs(100);
    config.backoff_cap = Duration::from_secs(1000);
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let first = lease(&mut client, "q", 1, 0).await.remove(0);
    let response = client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: first.lease_token,
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack")
        .into_inner();
    let retry = SystemTime::try_from(response.retry_time.expect("time")).expect("valid");
    let wait = retry.duration_since(SystemTime::now()).expect("future");
    assert!(
        wait > Duration::from_secs(70) && wait <= Duration::from_secs(120),
        "base 100 s ±20 %: {wait:?}"
    );
}

#[tokio::test]
async fn nack_to_dead_letter_and_after_max_attempts() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("poison")).await;
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    let response = client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: leased.lease_token,
            dead_letter: true,
            reason: "malformed address".into(),
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack")
        .into_inner();
    assert_eq!(response.outcome(), pb::NackOutcome::DeadLettered);
    assert_eq!(response.retry_time, None);

    let limited = pb::NewJob {
        max_attempts: 2,
        ..job("flaky")
    };
    enqueue(&mut client, "q", limited).await;
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let leased = lease(&mut client, "q", 1, 0).await.remove(0);
        let response = client
            .nack(pb::NackRequest {
                queue: "q".into(),
                lease_token: leased.lease_token,
                retry_delay: millis(0),
                ..pb::NackRequest::default()
            })
            .await
            .expect("nack")
            .into_inner();
        outcomes.push(response.outcome());
    }
    assert_eq!(
        outcomes,
        [
            pb::NackOutcome::RetryScheduled,
            pb::NackOutcome::DeadLettered
        ]
    );
    assert!(lease_jobs_now(&mut client, "q").await.is_empty());
}

#[tokio::test]
async fn extend_lease_moves_the_deadline_and_keeps_the_token() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("long job")).await;
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    let response = client
        .extend_lease(pb::ExtendLeaseRequest {
            queue: "q".into(),
            lease_token: leased.lease_token.clone(),
            lease_duration: secs(600),
        })
        .await
        .expect("extend")
        .into_inner();
    let deadline = SystemTime::try_from(response.lease_deadline.expect("deadline")).expect("valid");
    let left = deadline.duration_since(SystemTime::now()).expect("future");
    assert!(left > Duration::from_secs(590), "{left:?}");
    assert_eq!(
        ack(&mut client, "q", vec![leased.lease_token])
            .await
            .expect("ack"),
        1
    );
}

#[tokio::test]
async fn long_poll_wakes_when_a_job_arrives() {
    let server = TestServer::start().await;
    let mut waiter = server.client();
    let poll = tokio::spawn(async move { lease(&mut waiter, "q", 1, 60).await });
    crate::common::eventually("the long-poll waits on the server", || {
        server.long_polls("q") == 1
    })
    .await;
    let mut producer = server.client();
    let id = enqueue(&mut producer, "q", job("wake up")).await;
    let got = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("woken long before the 60 s wait")
        .expect("join");
    assert_eq!(got[0].job.as_ref().expect("job").id, id);
}

#[tokio::test]
async fn acks_from_many_tokens_are_atomic() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for i in 0..3 {
        enqueue(&mut client, "q", job(&i.to_string())).await;
    }
    let leases = lease(&mut client, "q", 3, 0).await;
    let tokens: Vec<_> = leases.iter().map(|l| l.lease_token.clone()).collect();
    assert_eq!(
        ack(&mut client, "q", vec![tokens[0].clone()])
            .await
            .expect("ack"),
        1
    );
    // Mixing a spent token with live ones acks nothing.
    let mixed = vec![tokens[1].clone(), tokens[0].clone(), tokens[2].clone()];
    let err = ack(&mut client, "q", mixed).await.expect_err("spent token");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains(&tokens[0]), "{}", err.message());
    assert_eq!(
        ack(&mut client, "q", tokens[1..].to_vec())
            .await
            .expect("ack"),
        2
    );
}
