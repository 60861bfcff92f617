//! Every refusal gets the right gRPC code and a message naming what was
//! wrong.

use std::time::Duration;

use crate::common::{TestServer, ack, enqueue, job, lease, secs};
use jobq::config::Config;
use jobq::grpc::pb;
use tonic::Code;

fn enqueue_request(queue: &str, job: pb::NewJob) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: queue.into(),
        job: Some(job),
        wait_for_room: false,
    }
}

fn assert_status(status: &tonic::Status, code: Code, fragment: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(fragment),
        "{:?} should mention {fragment:?}",
        status.message()
    );
}

#[tokio::test]
async fn bad_queue_names_are_invalid_arguments_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for name in ["", "has space", &"x".repeat(129), "emoji✉"] {
        let err = client
            .enqueue(enqueue_request(name, job("a")))
            .await
            .expect_err("bad name");
        assert_status(&err, Code::InvalidArgument, "queue:");
    }
    let err = client
        .lease(pb::LeaseRequest {
            queue: "a/b".into(),
            ..pb::LeaseRequest::default()
        })
        .await
        .expect_err("bad name");
    assert_status(&err, Code::InvalidArgument, "queue:");
}

#[tokio::test]
async fn oversized_payload_is_invalid_and_names_the_limit() {
    let mut config = Config::defaults();
    config.max_payload_bytes = 1000;
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    let big = pb::NewJob {
        payload: vec![0u8; 1001].into(),
        ..pb::NewJob::default()
    };
    let err = client
        .enqueue(enqueue_request("q", big))
        .await
        .expect_err("too big");
    assert_status(
        &err,
        Code::InvalidArgument,
        "job.payload: is 1001 bytes; the limit is 1000",
    );
}

#[tokio::test]
async fn missing_job_and_bad_batches_are_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let err = client
        .enqueue(pb::EnqueueRequest {
            queue: "q".into(),
            ..pb::EnqueueRequest::default()
        })
        .await
        .expect_err("no job");
    assert_status(&err, Code::InvalidArgument, "job: is required");

    let err = client
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "q".into(),
            ..pb::BatchEnqueueRequest::default()
        })
        .await
        .expect_err("empty batch");
    assert_status(&err, Code::InvalidArgument, "jobs:");

    let bad_attempts = pb::NewJob {
        max_attempts: 5000,
        ..job("a")
    };
    let err = client
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "q".into(),
            jobs: vec![job("ok"), bad_attempts],
            wait_for_room: false,
        })
        .await
        .expect_err("bad max_attempts");
    assert_status(&err, Code::InvalidArgument, "jobs[1].max_attempts");
    assert!(
        lease(&mut client, "q", 10, 0).await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn lease_durations_and_counts_out_of_range_are_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let cases = [
        (secs(0), 1, None, "lease_duration"),
        (secs(13 * 3600), 1, None, "lease_duration"),
        (None, 101, None, "max_jobs"),
        (None, 1, secs(3600), "wait_time"),
        (
            Some(prost_types::Duration {
                seconds: -5,
                nanos: 0,
            }),
            1,
            None,
            "lease_duration",
        ),
    ];
    for (lease_duration, max_jobs, wait_time, field) in cases {
        let err = client
            .lease(pb::LeaseRequest {
                queue: "q".into(),
                max_jobs,
                lease_duration,
                wait_time,
            })
            .await
            .expect_err("out of range");
        assert_status(&err, Code::InvalidArgument, field);
    }
    let err = client
        .extend_lease(pb::ExtendLeaseRequest {
            queue: "q".into(),
            lease_token: "0".repeat(48),
            lease_duration: None,
        })
        .await
        .expect_err("no duration");
    assert_status(&err, Code::InvalidArgument, "lease_duration: is required");
}

#[tokio::test]
async fn malformed_tokens_are_invalid_and_unknown_ones_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let err = ack(&mut client, "q", vec!["garbage".into()])
        .await
        .expect_err("malformed");
    assert_status(&err, Code::InvalidArgument, "lease_tokens[0]");
    let err = ack(&mut client, "q", vec![]).await.expect_err("empty");
    assert_status(&err, Code::InvalidArgument, "lease_tokens");

    let unknown = "0".repeat(48);
    let err = ack(&mut client, "never-used", vec![unknown.clone()])
        .await
        .expect_err("unknown queue");
    assert_status(&err, Code::NotFound, &unknown);
    enqueue(&mut client, "q", job("a")).await;
    for err in [
        ack(&mut client, "q", vec![unknown.clone()])
            .await
            .expect_err("unknown"),
        client
            .nack(pb::NackRequest {
                queue: "q".into(),
                lease_token: unknown.clone(),
                ..pb::NackRequest::default()
            })
            .await
            .expect_err("unknown"),
        client
            .extend_lease(pb::ExtendLeaseRequest {
                queue: "q".into(),
                lease_token: unknown.clone(),
                lease_duration: secs(10),
            })
            .await
            .expect_err("unknown"),
    ] {
        assert_status(&err, Code::NotFound, "is not live");
    }
}

#[tokio::test]
async fn nack_with_contradictory_fields_is_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    let err = client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: leased.lease_token.clone(),
            retry_delay: secs(1),
            dead_letter: true,
            reason: String::new(),
        })
        .await
        .expect_err("contradictory");
    assert_status(&err, Code::InvalidArgument, "retry_delay");
    // The refused nack changed nothing: the lease is still live.
    assert_eq!(
        ack(&mut client, "q", vec![leased.lease_token])
            .await
            .expect("ack"),
        1
    );
}

#[tokio::test]
async fn full_queue_is_resource_exhausted_and_a_batch_is_all_or_nothing() {
    let mut config = Config::defaults();
    config.queue_capacity = 3;
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    enqueue(&mut client, "q", job("b")).await;
    let err = client
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "q".into(),
            jobs: vec![job("c"), job("d")],
            wait_for_room: false,
        })
        .await
        .expect_err("over capacity");
    assert_status(&err, Code::ResourceExhausted, "holds 2 of its 3 jobs");
    assert_eq!(lease(&mut client, "q", 10, 0).await.len(), 2);
    enqueue(&mut client, "q", job("c")).await;
    let err = client
        .enqueue(enqueue_request("q", job("d")))
        .await
        .expect_err("full");
    assert_status(&err, Code::ResourceExhausted, "is full");
}

#[tokio::test]
async fn memory_budget_is_resource_exhausted_naming_the_limit() {
    let mut config = Config::defaults();
    // Room for one job of 60 bytes with its fixed 320, not two.
    config.memory_budget_bytes = 500;
    config.max_payload_bytes = 100;
    // The budget is the in-memory store's: a database store has none.
    let server = TestServer::start_memory_with(config).await;
    let mut client = server.client();
    let sixty = pb::NewJob {
        payload: vec![1u8; 60].into(),
        ..pb::NewJob::default()
    };
    enqueue(&mut client, "a", sixty.clone()).await;
    let err = client
        .enqueue(enqueue_request("b", sixty))
        .await
        .expect_err("over budget");
    assert_status(&err, Code::ResourceExhausted, "380 of 500 bytes");
}

#[tokio::test]
async fn wait_for_room_stores_the_job_once_a_worker_acks() {
    let mut config = Config::defaults();
    config.queue_capacity = 1;
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("first")).await;

    let mut producer = server.client();
    let waiting = tokio::spawn(async move {
        let mut request = tonic::Request::new(pb::EnqueueRequest {
            queue: "q".into(),
            job: Some(job("second")),
            wait_for_room: true,
        });
        request.set_timeout(Duration::from_secs(60));
        producer.enqueue(request).await
    });
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    ack(&mut client, "q", vec![leased.lease_token])
        .await
        .expect("ack");
    let stored = waiting
        .await
        .expect("join")
        .expect("stored once room was made");
    assert_eq!(stored.into_inner().job_id.len(), 26);
    let next = lease(&mut client, "q", 1, 10).await.remove(0);
    assert_eq!(&next.job.expect("job").payload[..], b"second");
}

#[tokio::test]
async fn wait_for_room_gives_up_at_the_server_limit_with_resource_exhausted() {
    let mut config = Config::defaults();
    config.queue_capacity = 1;
    config.max_enqueue_wait = Duration::from_millis(200);
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("first")).await;
    let mut request = tonic::Request::new(enqueue_request("q", job("second")));
    request.get_mut().wait_for_room = true;
    request.set_timeout(Duration::from_secs(60));
    let err = client.enqueue(request).await.expect_err("still full");
    assert_status(&err, Code::ResourceExhausted, "is full");
}

#[tokio::test]
async fn a_wait_for_room_cut_short_by_the_callers_deadline_still_says_why() {
    let mut config = Config::defaults();
    config.queue_capacity = 1;
    config.max_enqueue_wait = Duration::from_secs(60);
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("first")).await;
    let mut request = tonic::Request::new(enqueue_request("q", job("second")));
    request.get_mut().wait_for_room = true;
    // Far shorter than the server's limit: the server answers before it,
    // with the queue's reason, not a bare DEADLINE_EXCEEDED.
    request.set_timeout(Duration::from_secs(2));
    let err = client.enqueue(request).await.expect_err("still full");
    assert_status(&err, Code::ResourceExhausted, "is full");
}

#[tokio::test]
async fn no_refusal_echoes_a_huge_input_back() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let mut admin = crate::common::admin(&server);
    let huge = "z".repeat(2 << 20);
    let bad_char = format!("{}!", "a".repeat(100));
    let mut refusals: Vec<(&str, tonic::Status)> = Vec::new();
    let mut refused = |what: &'static str, result: Result<(), tonic::Status>| {
        refusals.push((what, result.expect_err(what)));
    };
    refused(
        "Enqueue queue",
        client
            .enqueue(enqueue_request(&huge, job("x")))
            .await
            .map(drop),
    );
    refused(
        "Enqueue queue with a bad character",
        client
            .enqueue(enqueue_request(&bad_char, job("x")))
            .await
            .map(drop),
    );
    let mut keyed = job("x");
    keyed.metadata.insert(huge.clone(), "v".into());
    refused(
        "Enqueue metadata key",
        client.enqueue(enqueue_request("q", keyed)).await.map(drop),
    );
    let mut keyed = job("x");
    keyed.idempotency_key = huge.clone();
    refused(
        "Enqueue idempotency key",
        client.enqueue(enqueue_request("q", keyed)).await.map(drop),
    );
    refused(
        "Ack token",
        client
            .ack(pb::AckRequest {
                queue: "q".into(),
                lease_tokens: vec![huge.clone()],
            })
            .await
            .map(drop),
    );
    refused(
        "Nack token",
        client
            .nack(pb::NackRequest {
                queue: "q".into(),
                lease_token: huge.clone(),
                ..pb::NackRequest::default()
            })
            .await
            .map(drop),
    );
    refused(
        "GetJob id",
        admin
            .get_job(pb::GetJobRequest {
                queue: String::new(),
                job_id: huge.clone(),
            })
            .await
            .map(drop),
    );
    refused(
        "CancelJob id",
        admin
            .cancel_job(pb::CancelJobRequest {
                queue: String::new(),
                job_id: huge.clone(),
            })
            .await
            .map(drop),
    );
    refused(
        "RedriveJobs id",
        admin
            .redrive_jobs(pb::RedriveJobsRequest {
                queue: "q".into(),
                job_ids: vec![huge.clone()],
                all: false,
            })
            .await
            .map(drop),
    );
    refused(
        "ListJobs page token",
        admin
            .list_jobs(pb::ListJobsRequest {
                queue: "q".into(),
                page_token: huge.clone(),
                ..pb::ListJobsRequest::default()
            })
            .await
            .map(drop),
    );
    refused(
        "ListQueues page token",
        admin
            .list_queues(pb::ListQueuesRequest {
                page_size: 10,
                page_token: huge.clone(),
            })
            .await
            .map(drop),
    );
    refused(
        "GetQueue name",
        admin
            .get_queue(pb::GetQueueRequest {
                queue: huge.clone(),
            })
            .await
            .map(drop),
    );
    for (what, status) in &refusals {
        assert!(
            status.message().len() <= 512,
            "{what}: a {}-byte message: {}…",
            status.message().len(),
            &status.message()[..200.min(status.message().len())]
        );
        assert!(!status.message().is_empty(), "{what}");
    }
}
