//! The Admin service and idempotent enqueue against a real server.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{TestServer, ack, admin, enqueue, job, lease, secs};
use jobq::config::Config;
use jobq::grpc::pb;
use tonic::Code;

async fn dead_letter(server: &TestServer, queue: &str, reason: &str) {
    let mut client = server.client();
    let leased = lease(&mut client, queue, 1, 0).await.remove(0);
    client
        .nack(pb::NackRequest {
            queue: queue.into(),
            lease_token: leased.lease_token,
            dead_letter: true,
            reason: reason.into(),
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack");
}

async fn queue_info(server: &TestServer, queue: &str) -> pb::QueueInfo {
    admin(server)
        .get_queue(pb::GetQueueRequest {
            queue: queue.into(),
        })
        .await
        .expect("get queue")
        .into_inner()
        .queue
        .expect("queue")
}

#[tokio::test]
async fn get_queue_reports_settings_counts_and_totals() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for i in 0..4 {
        enqueue(&mut client, "q", job(&i.to_string())).await;
    }
    let leased = lease(&mut client, "q", 2, 0).await;
    ack(&mut client, "q", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    dead_letter(&server, "q", "bad").await;

    let info = queue_info(&server, "q").await;
    assert_eq!(info.name, "q");
    let settings = info.settings.expect("settings");
    assert_eq!(settings.capacity, 100_000);
    assert_eq!(settings.max_attempts, 10);
    assert_eq!(settings.lease_duration, secs(30));
    let counts = info.counts.expect("counts");
    assert_eq!(
        (counts.ready, counts.scheduled, counts.leased, counts.dead),
        (1, 0, 1, 1)
    );
    let totals = info.totals.expect("totals");
    assert_eq!(
        (
            totals.enqueued,
            totals.leased,
            totals.acked,
            totals.nacked,
            totals.dead_lettered
        ),
        (4, 3, 1, 1, 1)
    );
    assert!(info.oldest_ready_age.is_some());
    assert!(!info.paused);

    let err = admin(&server)
        .get_queue(pb::GetQueueRequest {
            queue: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn list_queues_pages_by_name() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for name in ["c", "a", "b"] {
        enqueue(&mut client, name, job("x")).await;
    }
    let mut admin = admin(&server);
    let first = admin
        .list_queues(pb::ListQueuesRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    let names: Vec<_> = first.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let second = admin
        .list_queues(pb::ListQueuesRequest {
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(second.queues.len(), 1);
    assert_eq!(second.queues[0].name, "c");
    assert_eq!(second.next_page_token, "");
    let err = admin
        .list_queues(pb::ListQueuesRequest {
            page_size: 2,
            page_token: "not a name!".into(),
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));
}

#[tokio::test]
async fn update_queue_validates_and_applies_settings() {
    let server = TestServer::start().await;
    let mut admin = admin(&server);
    let err = admin
        .update_queue(pb::UpdateQueueRequest {
            queue: "new".into(),
            capacity: Some(5),
            ..pb::UpdateQueueRequest::default()
        })
        .await
        .expect_err("missing queue");
    assert_eq!(err.code(), Code::NotFound);

    for (request, field) in [
        (
            pb::UpdateQueueRequest {
                capacity: Some(0),
                ..pb::UpdateQueueRequest::default()
            },
            "capacity",
        ),
        (
            pb::UpdateQueueRequest {
                max_attempts: Some(0),
                ..pb::UpdateQueueRequest::default()
            },
            "max_attempts",
        ),
        (
            pb::UpdateQueueRequest {
                lease_duration: secs(0),
                ..pb::UpdateQueueRequest::default()
            },
            "lease_duration",
        ),
        (
            pb::UpdateQueueRequest {
                backoff_base: secs(3600),
                backoff_cap: secs(60),
                ..pb::UpdateQueueRequest::default()
            },
            "backoff_base",
        ),
    ] {
        let err = admin
            .update_queue(pb::UpdateQueueRequest {
                queue: "new".into(),
                allow_missing: true,
                ..request
            })
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(field), "{err:?}");
    }

    let info = admin
        .update_queue(pb::UpdateQueueRequest {
            queue: "new".into(),
            capacity: Some(1),
            max_attempts: Some(2),
            lease_duration: secs(5),
            allow_missing: true,
            ..pb::UpdateQueueRequest::default()
        })
        .await
        .expect("created")
        .into_inner()
        .queue
        .expect("queue");
    let settings = info.settings.expect("settings");
    assert_eq!((settings.capacity, settings.max_attempts), (1, 2));
    let mut client = server.client();
    let leased = {
        enqueue(&mut client, "new", job("a")).await;
        lease(&mut client, "new", 1, 0).await.remove(0)
    };
    assert_eq!(leased.job.expect("job").max_attempts, 2);
    let err = client
        .enqueue(pb::EnqueueRequest {
            queue: "new".into(),
            job: Some(job("b")),
            wait_for_room: false,
        })
        .await
        .expect_err("capacity 1");
    assert_eq!(err.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn delete_queue_refuses_while_jobs_are_leased_unless_forced() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    enqueue(&mut client, "q", job("b")).await;
    lease(&mut client, "q", 1, 0).await;
    let mut admin = admin(&server);
    let err = admin
        .delete_queue(pb::DeleteQueueRequest {
            queue: "q".into(),
            force: false,
        })
        .await
        .expect_err("leased");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("1 leased"), "{err:?}");
    let deleted = admin
        .delete_queue(pb::DeleteQueueRequest {
            queue: "q".into(),
            force: true,
        })
        .await
        .expect("forced")
        .into_inner();
    assert_eq!(deleted.deleted_job_count, 2);
    let stats = server.engine.stats().await.expect("stats");
    assert_eq!((stats.jobs_held, stats.memory_used), (0, 0));
    let err = admin
        .get_queue(pb::GetQueueRequest { queue: "q".into() })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn paused_queue_delivers_nothing_then_resumes() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let mut admin = admin(&server);
    admin
        .pause_queue(pb::PauseQueueRequest { queue: "q".into() })
        .await
        .expect("pause");
    enqueue(&mut client, "q", job("accepted while paused")).await;
    assert!(lease(&mut client, "q", 10, 0).await.is_empty());
    assert!(queue_info(&server, "q").await.paused);

    let mut waiter = server.client();
    let poll = tokio::spawn(async move { lease(&mut waiter, "q", 10, 60).await });
    admin
        .resume_queue(pb::ResumeQueueRequest { queue: "q".into() })
        .await
        .expect("resume");
    let got = tokio::time::timeout(crate::common::PATIENCE, poll)
        .await
        .expect("woken by the resume")
        .expect("join");
    let mut all = got.len();
    if all < 2 {
        all += lease(&mut client, "q", 10, 0).await.len();
    }
    assert_eq!(all, 2);
}

#[tokio::test]
async fn purge_removes_ready_jobs_or_dead_letters() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for i in 0..3 {
        enqueue(&mut client, "q", job(&i.to_string())).await;
    }
    dead_letter(&server, "q", "x").await;
    let mut admin = admin(&server);
    let purge = |target| pb::PurgeQueueRequest {
        queue: "q".into(),
        target,
    };
    let err = admin
        .purge_queue(purge(0))
        .await
        .expect_err("needs a target");
    assert_eq!(err.code(), Code::InvalidArgument);
    let ready = admin
        .purge_queue(purge(pb::PurgeTarget::Ready.into()))
        .await
        .expect("purge ready")
        .into_inner();
    assert_eq!(ready.purged_job_count, 2);
    let counts = queue_info(&server, "q").await.counts.expect("counts");
    assert_eq!((counts.ready, counts.dead), (0, 1));
    let dead = admin
        .purge_queue(purge(pb::PurgeTarget::Dead.into()))
        .await
        .expect("purge dead")
        .into_inner();
    assert_eq!(dead.purged_job_count, 1);
    let stats = server.engine.stats().await.expect("stats");
    assert_eq!((stats.jobs_held, stats.memory_used), (0, 0));
}

#[tokio::test]
async fn paging_through_jobs_returns_every_job_exactly_once() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let mut ids = HashSet::new();
    for chunk in 0..5 {
        let jobs = (0..50).map(|i| job(&format!("{chunk}-{i}"))).collect();
        let reply = client
            .batch_enqueue(pb::BatchEnqueueRequest {
                queue: "q".into(),
                jobs,
                wait_for_room: false,
            })
            .await
            .expect("batch")
            .into_inner();
        ids.extend(reply.job_ids);
    }
    let mut admin = admin(&server);
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .list_jobs(pb::ListJobsRequest {
                queue: "q".into(),
                state: pb::JobState::Ready.into(),
                page_size: 100,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        seen.extend(page.jobs.into_iter().map(|j| j.job.expect("job").id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);
    assert!(
        lease(&mut client, "q", 1, 0).await.len() == 1,
        "listing leased nothing"
    );

    let err = admin
        .list_jobs(pb::ListJobsRequest {
            queue: "q".into(),
            page_token: "garbage".into(),
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .list_jobs(pb::ListJobsRequest {
            queue: "missing".into(),
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect_err("unknown queue");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn get_job_and_cancel_follow_the_job_through_its_states() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let done = enqueue(&mut client, "q", job("done")).await;
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    let mut admin = admin(&server);
    let get = |id: &str| pb::GetJobRequest {
        job_id: id.into(),
        queue: String::new(),
    };
    let info = admin
        .get_job(get(&done))
        .await
        .expect("get")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(info.state(), pb::JobState::Leased);
    let err = admin
        .cancel_job(pb::CancelJobRequest {
            job_id: done.clone(),
            queue: "q".into(),
        })
        .await
        .expect_err("leased");
    assert_eq!(err.code(), Code::FailedPrecondition);
    ack(&mut client, "q", vec![leased.lease_token])
        .await
        .expect("ack");
    let info = admin
        .get_job(get(&done))
        .await
        .expect("finished jobs are kept")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(info.state(), pb::JobState::Acked);
    assert!(info.finish_time.is_some());

    let doomed = enqueue(&mut client, "q", job("doomed")).await;
    admin
        .cancel_job(pb::CancelJobRequest {
            job_id: doomed.clone(),
            queue: String::new(),
        })
        .await
        .expect("cancel");
    let info = admin.get_job(get(&doomed)).await.expect("get").into_inner();
    assert_eq!(info.job.expect("job").state(), pb::JobState::Cancelled);

    let err = admin
        .get_job(get("01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = admin.get_job(get("nope")).await.expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn redrive_resets_attempts_and_makes_dead_jobs_leasable() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let first = enqueue(&mut client, "q", job("a")).await;
    enqueue(&mut client, "q", job("b")).await;
    dead_letter(&server, "q", "first failure").await;
    dead_letter(&server, "q", "second failure").await;
    let mut admin = admin(&server);

    let dead = admin
        .list_jobs(pb::ListJobsRequest {
            queue: "q".into(),
            state: pb::JobState::Dead.into(),
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect("list dead")
        .into_inner()
        .jobs;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].last_error, "first failure");
    assert_eq!(dead[0].failures.len(), 1);
    assert_eq!(dead[0].failures[0].attempt, 1);

    let one = admin
        .redrive_jobs(pb::RedriveJobsRequest {
            queue: "q".into(),
            job_ids: vec![first.clone()],
            all: false,
        })
        .await
        .expect("redrive one")
        .into_inner();
    assert_eq!(one.redriven_job_count, 1);
    let err = admin
        .redrive_jobs(pb::RedriveJobsRequest {
            queue: "q".into(),
            job_ids: vec![first.clone()],
            all: false,
        })
        .await
        .expect_err("not dead any more");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let rest = admin
        .redrive_jobs(pb::RedriveJobsRequest {
            queue: "q".into(),
            job_ids: vec![],
            all: true,
        })
        .await
        .expect("redrive all")
        .into_inner();
    assert_eq!(rest.redriven_job_count, 1);
    let again = lease(&mut client, "q", 10, 0).await;
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|l| l.attempt == 1), "attempts reset");
}

#[tokio::test]
async fn idempotent_enqueue_within_the_window_returns_the_first_job() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let keyed = |key: &str| pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(pb::NewJob {
            idempotency_key: key.into(),
            ..job("charge card")
        }),
        wait_for_room: false,
    };
    let first = client
        .enqueue(keyed("order-42"))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.duplicate);
    let retry = client
        .enqueue(keyed("order-42"))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.duplicate);
    assert_eq!(retry.job_id, first.job_id);
    let batch = client
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "q".into(),
            jobs: vec![
                keyed("order-42").job.expect("job"),
                keyed("order-43").job.expect("job"),
            ],
            wait_for_room: false,
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(batch.duplicates, [true, false]);
    assert_eq!(batch.job_ids[0], first.job_id);
    assert_eq!(lease(&mut client, "q", 10, 0).await.len(), 2);
}

#[tokio::test]
async fn idempotency_key_makes_a_new_job_after_the_window() {
    let mut config = Config::defaults();
    config.idempotency_window = Duration::from_millis(50);
    let server = TestServer::start_with(config).await;
    let mut client = server.client();
    let keyed = || pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(pb::NewJob {
            idempotency_key: "k".into(),
            ..job("x")
        }),
        wait_for_room: false,
    };
    let first = client.enqueue(keyed()).await.expect("first").into_inner();
    // Time only moves forward: after this sleep the window has passed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = client.enqueue(keyed()).await.expect("later").into_inner();
    assert!(!later.duplicate);
    assert_ne!(later.job_id, first.job_id);
}
