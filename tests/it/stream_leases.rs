//! The StreamLeases RPC against a real server.

use crate::common::{
    TestServer, ack, enqueue, eventually_async, job, lease, open_stream, try_open_stream,
};
use jobq::grpc::pb;
use jobq::grpc::pb::stream_leases_request::Kind;
use jobq::queue::{JobId, JobState};
use tonic::Code;

async fn enqueue_n(server: &TestServer, queue: &str, n: usize) -> Vec<String> {
    let mut client = server.client();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(enqueue(&mut client, queue, job(&format!("job-{i}"))).await);
    }
    ids
}

#[tokio::test]
async fn stream_never_holds_more_than_its_credits() {
    let server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 5).await;
    enqueue_n(&server, "q", 20).await;
    let mut leases = Vec::new();
    for _ in 0..5 {
        leases.push(stream.next_lease().await);
    }
    // Acking one on the stream gives exactly one credit back.
    let request = stream.ack(&leases[0].lease_token).await;
    let result = stream.next_result().await;
    assert_eq!((result.request_id, result.code), (request, 0));
    let sixth = stream.next_lease().await;
    assert_eq!(sixth.attempt, 1);
    // The rest stayed in the queue: the stream took 6, one of them acked.
    let mut client = server.client();
    assert_eq!(lease(&mut client, "q", 100, 0).await.len(), 14);
    let counts = server.counts("q").await.expect("queue");
    assert_eq!(counts.leased, 5 + 14);
}

#[tokio::test]
async fn granting_credits_raises_the_limit() {
    let server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 1).await;
    enqueue_n(&server, "q", 3).await;
    stream.next_lease().await;
    stream
        .send(Kind::Grant(pb::StreamGrant { credits: 2 }))
        .await;
    stream.next_lease().await;
    stream.next_lease().await;
    assert_eq!(server.counts("q").await.expect("queue").ready, 0);
}

#[tokio::test]
async fn two_streams_share_a_queue_neither_starving() {
    let server = TestServer::start().await;
    let mut a = open_stream(&server, "q", 3).await;
    let mut b = open_stream(&server, "q", 3).await;
    enqueue_n(&server, "q", 10).await;
    for _ in 0..3 {
        a.next_lease().await;
        b.next_lease().await;
    }
    let mut client = server.client();
    assert_eq!(lease(&mut client, "q", 100, 0).await.len(), 4);
}

#[tokio::test]
async fn dropped_stream_gives_its_leases_back_at_once_with_the_attempt_counted() {
    let server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 2).await;
    enqueue_n(&server, "q", 2).await;
    let first = stream.next_lease().await;
    stream.next_lease().await;
    drop(stream);
    // Well inside the 30 s lease: the stream's end released them.
    let mut client = server.client();
    let mut again = lease(&mut client, "q", 2, 10).await;
    if again.len() < 2 {
        again.extend(lease(&mut client, "q", 1, 10).await);
    }
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|l| l.attempt == 2));
    let id: JobId = first.job.expect("job").id.parse().expect("id");
    let status = server.job_status("q", &id).await.expect("held");
    assert!(
        status
            .last_error
            .expect("error")
            .contains("worker stream holding the lease closed")
    );
}

#[tokio::test]
async fn job_that_kills_every_worker_is_dead_lettered_after_its_drops_run_out() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let poison = pb::NewJob {
        max_attempts: 3,
        ..job("poison")
    };
    let id: JobId = enqueue(&mut client, "q", poison).await.parse().expect("id");
    // Drops are not failures, but a job dropped DROPS_PER_ATTEMPT times
    // max_attempts times is dead-lettered all the same.
    let drops = 3 * jobq::queue::DROPS_PER_ATTEMPT;
    for attempt in 1..=drops {
        let mut stream = open_stream(&server, "q", 1).await;
        let leased = stream.next_lease().await;
        assert_eq!(leased.attempt, attempt);
        drop(stream); // the worker "crashes" on it
    }
    eventually_async("the poison job is dead-lettered", async || {
        server
            .job_status("q", &id)
            .await
            .is_some_and(|s| s.state == JobState::Dead)
    })
    .await;
    let status = server.job_status("q", &id).await.expect("held");
    assert_eq!(status.attempts, drops);
}

#[tokio::test]
async fn acks_on_the_stream_and_by_unary_rpc_both_return_credits() {
    let server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 2).await;
    enqueue_n(&server, "q", 4).await;
    let one = stream.next_lease().await;
    let two = stream.next_lease().await;

    let request = stream.ack(&one.lease_token).await;
    let result = stream.next_result().await;
    assert_eq!((result.request_id, result.code), (request, 0));
    let mut client = server.client();
    assert_eq!(
        ack(&mut client, "q", vec![two.lease_token])
            .await
            .expect("unary ack of a stream lease"),
        1
    );
    // Both credits came back: the other two jobs arrive.
    stream.next_lease().await;
    stream.next_lease().await;
    assert_eq!(server.counts("q").await.expect("queue").ready, 0);
}

#[tokio::test]
async fn nack_and_extend_on_the_stream_answer_with_their_results() {
    let server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 1).await;
    enqueue_n(&server, "q", 1).await;
    let leased = stream.next_lease().await;

    stream
        .send(Kind::Extend(pb::StreamExtend {
            request_id: 7,
            lease_token: leased.lease_token.clone(),
            lease_duration: crate::common::secs(120),
        }))
        .await;
    let extended = stream.next_result().await;
    assert_eq!((extended.request_id, extended.code), (7, 0));
    assert!(extended.time.is_some());

    stream
        .send(Kind::Nack(pb::StreamNack {
            request_id: 8,
            lease_token: leased.lease_token.clone(),
            retry_delay: crate::common::millis(0),
            dead_letter: false,
            reason: "try again".into(),
        }))
        .await;
    let nacked = stream.next_result().await;
    assert_eq!((nacked.request_id, nacked.code), (8, 0));
    assert_eq!(nacked.nack_outcome(), pb::NackOutcome::RetryScheduled);
    // Retried at once, to the same stream, whose credit came back.
    let again = stream.next_lease().await;
    assert_eq!(again.attempt, 2);

    // A stale token gets the unary RPC's error, and the stream stays open.
    let request = stream.ack(&leased.lease_token).await;
    let stale = stream.next_result().await;
    assert_eq!(stale.request_id, request);
    assert_eq!(stale.code, Code::NotFound as i32);
    assert!(stale.message.contains("is not live"), "{}", stale.message);
    let request = stream.ack("not-a-token").await;
    let malformed = stream.next_result().await;
    assert_eq!(
        (malformed.request_id, malformed.code),
        (request, Code::InvalidArgument as i32)
    );
    let request = stream.ack(&again.lease_token).await;
    assert_eq!(stream.next_result().await.request_id, request);
}

#[tokio::test]
async fn bad_opens_and_protocol_errors_are_invalid_arguments() {
    let server = TestServer::start().await;
    for (name, credits, fragment) in [
        ("bad name", 1, "queue:"),
        ("q", 0, "open.credits"),
        ("q", 10_001, "open.credits"),
    ] {
        let err = match try_open_stream(&server, name, credits).await {
            Ok(mut stream) => stream.next().await.expect_err("refused"),
            Err(status) => status,
        };
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(fragment), "{err:?}");
    }

    let mut stream = open_stream(&server, "q", 1).await;
    stream
        .send(Kind::Grant(pb::StreamGrant { credits: 0 }))
        .await;
    let err = stream.next().await.expect_err("bad grant ends the stream");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("grant.credits"), "{err:?}");
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable() {
    let mut server = TestServer::start().await;
    let mut stream = open_stream(&server, "q", 1).await;
    enqueue_n(&server, "q", 1).await;
    stream.next_lease().await;
    server.begin_shutdown();
    let err = stream.next().await.expect_err("stream ended by shutdown");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("reconnect"), "{err:?}");
}

#[tokio::test]
async fn a_worker_is_told_when_its_queue_is_paused_and_resumed() {
    use pb::stream_leases_response::Kind as Message;
    let server = TestServer::start().await;
    let mut admin = crate::common::admin(&server);
    let mut client = server.client();
    enqueue(&mut client, "held", job("a")).await;
    admin
        .pause_queue(pb::PauseQueueRequest {
            queue: "held".into(),
        })
        .await
        .expect("pause");
    // A paused queue says so on a unary lease, unlike an empty one.
    let reply = client
        .lease(pb::LeaseRequest {
            queue: "held".into(),
            max_jobs: 1,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease")
        .into_inner();
    assert!(reply.leases.is_empty() && reply.queue_paused);
    let reply = client
        .lease(pb::LeaseRequest {
            queue: "empty".into(),
            max_jobs: 1,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease")
        .into_inner();
    assert!(reply.leases.is_empty() && !reply.queue_paused);

    // A stream opened on it hears it first, and hears the resume.
    let mut stream = open_stream(&server, "held", 10).await;
    match stream.next().await.expect("ok").expect("open").kind {
        Some(Message::QueueState(state)) => assert!(state.paused),
        other => panic!("expected the queue's state, got {other:?}"),
    }
    admin
        .resume_queue(pb::ResumeQueueRequest {
            queue: "held".into(),
        })
        .await
        .expect("resume");
    match stream.next().await.expect("ok").expect("open").kind {
        Some(Message::QueueState(state)) => assert!(!state.paused),
        other => panic!("expected the queue's state, got {other:?}"),
    }
    assert_eq!(stream.next_lease().await.job.expect("job").payload, "a");
    // And a pause while it is open.
    admin
        .pause_queue(pb::PauseQueueRequest {
            queue: "held".into(),
        })
        .await
        .expect("pause");
    match stream.next().await.expect("ok").expect("open").kind {
        Some(Message::QueueState(state)) => assert!(state.paused),
        other => panic!("expected the queue's state, got {other:?}"),
    }
}

#[tokio::test]
async fn every_lease_says_how_long_it_has_left_so_no_clock_is_compared() {
    let server = TestServer::start().await;
    enqueue_n(&server, "timed", 1).await;
    let mut stream = open_stream(&server, "timed", 1).await;
    let pushed = stream.next_lease().await;
    let left = std::time::Duration::try_from(pushed.lease_duration.expect("a duration"))
        .expect("non-negative");
    // The queue's default lease, as sent: at most 30 s, and not much less.
    assert!(left <= std::time::Duration::from_secs(30), "{left:?}");
    assert!(left > std::time::Duration::from_secs(25), "{left:?}");
    let mut client = server.client();
    let unary = {
        enqueue_n(&server, "timed", 1).await;
        lease(&mut client, "timed", 1, 5).await.remove(0)
    };
    assert!(unary.lease_duration.is_some());
}

#[tokio::test]
async fn a_mass_disconnect_dead_letters_no_healthy_job_and_a_poison_job_still_dies() {
    const JOBS: usize = 20_000;
    let server = TestServer::start().await;
    let mut client = server.client();
    crate::common::admin(&server)
        .update_queue(pb::UpdateQueueRequest {
            queue: "rollout".into(),
            max_attempts: Some(2),
            allow_missing: true,
            ..pb::UpdateQueueRequest::default()
        })
        .await
        .expect("settings");
    for _ in 0..JOBS / 1000 {
        client
            .batch_enqueue(pb::BatchEnqueueRequest {
                queue: "rollout".into(),
                jobs: (0..1000).map(|_| job("healthy")).collect(),
                wait_for_room: false,
            })
            .await
            .expect("enqueue");
    }
    let poison: JobId = enqueue(&mut client, "rollout", job("poison"))
        .await
        .parse()
        .expect("id");
    // Three rollouts: every job in flight on streams that all end at once,
    // more times than max_attempts allows failures.
    for _ in 0..3 {
        // Ten workers, reading whatever is pushed to them.
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let mut stream = open_stream(&server, "rollout", 2_001).await;
            workers.spawn(async move {
                loop {
                    stream.next_lease().await;
                }
            });
        }
        eventually_async("every job in flight", async || {
            server
                .counts("rollout")
                .await
                .is_some_and(|c| c.leased == JOBS + 1)
        })
        .await;
        // All their pods go at once.
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        eventually_async("every lease back", async || {
            server
                .counts("rollout")
                .await
                .is_some_and(|c| c.leased == 0)
        })
        .await;
        let counts = server.counts("rollout").await.expect("queue");
        assert_eq!(counts.dead, 0, "a disconnect dead-lettered a healthy job");
    }
    // Then a worker that takes one job at a time and finishes every one but
    // the poison job, which crashes it each time (and it restarts).
    use pb::stream_leases_response::Kind as Message;
    let mut stream = open_stream(&server, "rollout", 1).await;
    let mut crashes = 0;
    while server
        .counts("rollout")
        .await
        .is_some_and(|c| c.ready + c.leased > 0)
    {
        let lease = stream.next_lease().await;
        if lease.job.as_ref().expect("job").payload == "poison" {
            crashes += 1;
            drop(stream);
            eventually_async("the crashed worker's lease back", async || {
                server
                    .counts("rollout")
                    .await
                    .is_some_and(|c| c.leased == 0)
            })
            .await;
            stream = open_stream(&server, "rollout", 1).await;
            continue;
        }
        stream.ack(&lease.lease_token).await;
        match stream.next().await.expect("ok").expect("open").kind {
            Some(Message::Result(result)) => assert_eq!(result.code, 0, "{result:?}"),
            other => panic!("expected the ack's result, got {other:?}"),
        }
    }
    // Three drops in the rollouts, the rest from its own crashes.
    assert_eq!(crashes, 2 * jobq::queue::DROPS_PER_ATTEMPT - 3);
    let counts = server.counts("rollout").await.expect("queue");
    assert_eq!((counts.ready, counts.leased, counts.scheduled), (0, 0, 0));
    assert_eq!(counts.dead, 1, "only the poison job is dead-lettered");
    let status = server.job_status("rollout", &poison).await.expect("held");
    assert_eq!(status.state, JobState::Dead);
}
