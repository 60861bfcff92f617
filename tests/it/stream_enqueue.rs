//! `StreamEnqueue` against a real server: per-job answers, refusals that
//! leave the stream open, whole-or-nothing storage when a stream is cut,
//! and the Rust client multiplexing many tasks over one stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::raw::{RawCall, grpc_frame};
use crate::common::{PATIENCE, TestServer, job, lease, scrape};
use bytes::{BufMut, Bytes, BytesMut};
use jobq::config::Config;
use jobq::grpc::pb;
use jobq_client::Client;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// The producer's end of a raw StreamEnqueue stream.
struct Producer {
    tx: mpsc::Sender<pb::StreamEnqueueRequest>,
    rx: tonic::Streaming<pb::StreamEnqueueResponse>,
}

impl Producer {
    async fn open(server: &TestServer) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let rx = server
            .client()
            .stream_enqueue(ReceiverStream::new(rx))
            .await
            .expect("stream opened")
            .into_inner();
        Self { tx, rx }
    }

    async fn send(&self, request_id: u64, queue: &str, job: Option<pb::NewJob>) {
        self.tx
            .send(pb::StreamEnqueueRequest {
                request_id,
                queue: queue.into(),
                job,
            })
            .await
            .expect("stream open");
    }

    async fn answer(&mut self) -> pb::StreamEnqueueResponse {
        tokio::time::timeout(PATIENCE, self.rx.message())
            .await
            .expect("answered in time")
            .expect("stream ok")
            .expect("stream open")
    }
}

#[tokio::test]
async fn each_job_is_answered_in_order_and_refusals_do_not_end_the_stream() {
    let server = TestServer::start().await;
    let mut producer = Producer::open(&server).await;
    let too_big = pb::NewJob {
        payload: vec![0_u8; 2 * 1024 * 1024].into(),
        ..pb::NewJob::default()
    };
    let jobs: Vec<(u64, &str, Option<pb::NewJob>)> = vec![
        (10, "mail", Some(job("a"))),
        (11, "mail", Some(job("b"))),
        (12, "bad queue", Some(job("c"))),
        (13, "mail", None),
        (14, "mail", Some(too_big)),
        (15, "mail", Some(job("d"))),
        (16, "other", Some(job("e"))),
    ];
    for (id, queue, job) in jobs {
        producer.send(id, queue, job).await;
    }
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(producer.answer().await);
    }
    let ids: Vec<u64> = answers.iter().map(|a| a.request_id).collect();
    assert_eq!(ids, [10, 11, 12, 13, 14, 15, 16]);
    let codes: Vec<Code> = answers.iter().map(|a| Code::from(a.code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::Ok,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::Ok,
            Code::Ok
        ]
    );
    assert!(
        answers[2].message.contains("queue"),
        "{}",
        answers[2].message
    );
    assert_eq!(answers[3].message, "job: is required");
    assert!(
        answers[4].message.contains("job.payload") && answers[4].message.contains("1048576"),
        "{}",
        answers[4].message
    );
    for refused in &answers[2..5] {
        assert!(refused.job_id.is_empty());
    }

    // The stored jobs are exactly the accepted ones, under the ids given.
    let mut client = server.client();
    let leased = lease(&mut client, "mail", 10, 1).await;
    let by_id: HashMap<_, _> = leased
        .iter()
        .map(|l| {
            let job = l.job.as_ref().expect("job");
            (job.id.clone(), job.payload.clone())
        })
        .collect();
    assert_eq!(by_id.len(), 3);
    assert_eq!(by_id[&answers[0].job_id], Bytes::from("a"));
    assert_eq!(by_id[&answers[1].job_id], Bytes::from("b"));
    assert_eq!(by_id[&answers[5].job_id], Bytes::from("d"));
    let other = lease(&mut client, "other", 10, 1).await;
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].job.as_ref().expect("job").id, answers[6].job_id);
}

#[tokio::test]
async fn a_full_queue_is_refused_per_job_and_the_stream_carries_on() {
    let config = Config {
        queue_capacity: 3,
        ..Config::defaults()
    };
    let server = TestServer::start_with(config).await;
    let mut producer = Producer::open(&server).await;
    for id in 0..5 {
        producer.send(id, "small", Some(job("x"))).await;
    }
    let mut codes = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let answer = producer.answer().await;
        codes.push(Code::from(answer.code));
        last = Some(answer);
    }
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::Ok,
            Code::Ok,
            Code::ResourceExhausted,
            Code::ResourceExhausted
        ]
    );
    let last = last.expect("answers");
    assert!(last.message.contains("is full"), "{}", last.message);
    assert_eq!(server.counts("small").await.expect("queue").ready, 3);

    // Room again after a lease and ack: the same stream takes the job.
    let mut client = server.client();
    let leased = lease(&mut client, "small", 1, 1).await;
    crate::common::ack(&mut client, "small", vec![leased[0].lease_token.clone()])
        .await
        .expect("ack");
    producer.send(5, "small", Some(job("y"))).await;
    let answer = producer.answer().await;
    assert_eq!((answer.request_id, answer.code), (5, 0));
}

#[tokio::test]
async fn idempotency_keys_work_as_in_unary_enqueue() {
    let server = TestServer::start().await;
    let mut producer = Producer::open(&server).await;
    let keyed = || pb::NewJob {
        idempotency_key: "order-7".into(),
        ..job("receipt")
    };
    producer.send(1, "receipts", Some(keyed())).await;
    producer.send(2, "receipts", Some(keyed())).await;
    let first = producer.answer().await;
    let second = producer.answer().await;
    assert_eq!((first.code, first.duplicate), (0, false));
    assert_eq!((second.code, second.duplicate), (0, true));
    assert_eq!(first.job_id, second.job_id);
    // And across paths: a unary retry of the same key is a duplicate too.
    let unary = server
        .client()
        .enqueue(pb::EnqueueRequest {
            queue: "receipts".into(),
            job: Some(keyed()),
            wait_for_room: false,
        })
        .await
        .expect("enqueue")
        .into_inner();
    assert_eq!((unary.job_id, unary.duplicate), (first.job_id, true));
}

fn raw_request(id: u64, payload: &[u8]) -> pb::StreamEnqueueRequest {
    pb::StreamEnqueueRequest {
        request_id: id,
        queue: "cut".into(),
        job: Some(pb::NewJob {
            payload: Bytes::copy_from_slice(payload),
            ..pb::NewJob::default()
        }),
    }
}

#[tokio::test]
async fn a_stream_cut_in_the_middle_of_a_job_stores_none_of_it() {
    let server = TestServer::start().await;
    // Raw HTTP/2, to cut the stream half-way through a message.
    let mut call = RawCall::start(server.addr, "/jobq.v1.JobQueue/StreamEnqueue").await;
    let mut whole = BytesMut::new();
    whole.put(grpc_frame(&raw_request(1, b"first")));
    whole.put(grpc_frame(&raw_request(2, b"second")));
    call.send(whole.freeze());
    // Both answered, so both stored.
    for answer in call.messages(2).await {
        let answer = pb::StreamEnqueueResponse::decode(answer).expect("answer");
        assert_eq!(answer.code, 0, "{}", answer.message);
    }

    // Half of a third job, then the stream is reset.
    let third = grpc_frame(&raw_request(3, &[b'z'; 4096]));
    call.send(third.slice(..third.len() / 2));
    call.body.send_reset(h2::Reason::CANCEL);

    // A later job on a fresh stream is stored after the cut one would be.
    let mut producer = Producer::open(&server).await;
    producer.send(4, "cut", Some(job("fourth"))).await;
    assert_eq!(producer.answer().await.code, 0);
    let leased = lease(&mut server.client(), "cut", 10, 1).await;
    let payloads: HashSet<Bytes> = leased
        .iter()
        .map(|l| l.job.as_ref().expect("job").payload.clone())
        .collect();
    assert_eq!(
        payloads,
        HashSet::from([
            Bytes::from("first"),
            Bytes::from("second"),
            Bytes::from("fourth")
        ])
    );
}

#[tokio::test]
async fn many_tasks_share_one_client_stream_and_each_gets_its_own_answer() {
    let server = TestServer::start().await;
    let client = Client::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for n in 0..100 {
                let payload = format!("task {task} job {n}");
                let id = client
                    .enqueue("shared", payload.clone())
                    .send()
                    .await
                    .expect("enqueue");
                mine.push((id, payload));
            }
            mine
        });
    }
    let mut sent = HashMap::new();
    while let Some(mine) = tasks.join_next().await {
        for (id, payload) in mine.expect("task") {
            assert!(sent.insert(id, payload).is_none(), "an id answered twice");
        }
    }
    assert_eq!(sent.len(), 800);

    let mut client_raw = server.client();
    let mut stored = HashMap::new();
    while stored.len() < 800 {
        for l in lease(&mut client_raw, "shared", 100, 1).await {
            let job = l.job.expect("job");
            stored.insert(
                job.id,
                String::from_utf8(job.payload.to_vec()).expect("utf-8"),
            );
        }
    }
    assert_eq!(stored, sent, "every id names the job its caller sent");
    // One StreamEnqueue stream carried them all.
    let metrics = scrape(&server).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"jobq_rpc_requests_total{method="StreamEnqueue",code="OK"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_errors_carry_the_servers_code_and_a_broken_stream_is_replaced() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let client = Client::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let refused = client
        .enqueue("bad queue", "x")
        .send()
        .await
        .expect_err("bad name");
    let status = refused.status().expect("a status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("queue"), "{}", status.message());
    // The stream survives a refused job.
    client.enqueue("ok", "y").send().await.expect("enqueue");

    // Restart the server on the same port: the next enqueue opens a new
    // stream on its own.
    server.shutdown().await.expect("clean shutdown");
    let server = TestServer::start_on(addr).await;
    let id = tokio::time::timeout(PATIENCE, async {
        loop {
            match client.enqueue("ok", "after restart").send().await {
                Ok(id) => break id,
                Err(e) => {
                    let code = e.status().map(tonic::Status::code);
                    assert_eq!(code, Some(Code::Unavailable), "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await
    .expect("enqueued after the restart");
    let leased = lease(&mut server.client(), "ok", 10, 1).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job.as_ref().expect("job").id, id);
}

#[tokio::test]
async fn a_producer_that_reads_no_answers_is_held_back() {
    const JOBS: u64 = 20_000;
    let server = TestServer::start().await;
    // A producer whose HTTP/2 windows hold about 1 600 unread answers (a
    // tonic client's default stream window of 2 MiB holds about 50 000).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let mut answers = pb::job_queue_client::JobQueueClient::new(channel)
        .stream_enqueue(ReceiverStream::new(rx))
        .await
        .expect("stream opened")
        .into_inner();
    let sender = tokio::spawn(async move {
        for id in 0..JOBS {
            let request = pb::StreamEnqueueRequest {
                request_id: id,
                queue: "held".into(),
                job: Some(job("x")),
            };
            if tx.send(request).await.is_err() {
                break;
            }
        }
    });
    // Read nothing until the server has stopped storing.
    let stored = async || server.counts("held").await.map_or(0, |c| c.ready);
    let mut last = (stored().await, tokio::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = stored().await;
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
        assert!(
            now < JOBS as usize,
            "all {JOBS} jobs stored with no answer read"
        );
    }
    // What the windows and one write buffer hold, not the whole burst.
    assert!(last.0 < 5_000, "{} jobs stored with no answer read", last.0);

    // Reading the answers lets the rest in.
    for id in 0..JOBS {
        let answer = tokio::time::timeout(PATIENCE, answers.message())
            .await
            .expect("answer in time")
            .expect("ok")
            .expect("open");
        assert_eq!((answer.request_id, answer.code), (id, 0));
    }
    sender.await.expect("sender");
    assert_eq!(stored().await, JOBS as usize);
}

#[tokio::test]
async fn shutdown_ends_producer_streams_with_unavailable() {
    let mut server = TestServer::start().await;
    let mut producer = Producer::open(&server).await;
    producer.send(1, "mail", Some(job("a"))).await;
    assert_eq!(producer.answer().await.code, 0);
    server.begin_shutdown();
    let end = tokio::time::timeout(PATIENCE, producer.rx.message())
        .await
        .expect("ended in time")
        .expect_err("ended with a status");
    assert_eq!(end.code(), Code::Unavailable);
    assert!(end.message().contains("shutting down"), "{}", end.message());
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown did not wait on the stream")
        .expect("clean shutdown");
}

/// A server whose stores wait at a gate, as a journal's or a database's
/// would, and the gate.
async fn gated_server() -> (TestServer, crate::common::gated::Gated) {
    let mut gate = None;
    let server = TestServer::start_wrapped(Config::defaults(), |engine| {
        let gated = crate::common::gated::Gated::closed(engine);
        gate = Some(gated.clone());
        std::sync::Arc::new(gated)
    })
    .await;
    (server, gate.expect("wrapped"))
}

#[tokio::test]
async fn with_a_store_that_waits_answers_stay_in_order_and_unconfirmed_jobs_stay_bounded() {
    const JOBS: u64 = 300;
    let (server, gate) = gated_server().await;
    let mut producer = Producer::open(&server).await;
    for id in 1..=JOBS {
        producer.send(id, "slow", Some(job("x"))).await;
    }
    // The server starts at most 128 stores for one stream, then stops
    // reading it until answers go out.
    crate::common::eventually("the in-flight set fills", || gate.begun() == 128).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gate.begun(),
        128,
        "no store begins past the in-flight bound"
    );
    assert_eq!(server.counts("slow").await.map_or(0, |c| c.ready), 0);

    gate.open();
    for id in 1..=JOBS {
        let answer = producer.answer().await;
        assert_eq!(answer.request_id, id, "answers in request order");
        assert_eq!(answer.code, 0, "{}", answer.message);
    }
    assert_eq!(
        server.counts("slow").await.expect("queue").ready,
        JOBS as usize
    );
}

#[tokio::test]
async fn a_store_that_is_down_or_broken_refuses_that_job_and_the_stream_goes_on() {
    let (server, gate) = gated_server().await;
    gate.open();
    let mut producer = Producer::open(&server).await;
    producer.send(1, "q", Some(job("before"))).await;
    producer.send(2, "q", Some(job("down"))).await;
    producer.send(3, "q", Some(job("broken"))).await;
    producer.send(4, "q", Some(job("after"))).await;
    let answers = [
        producer.answer().await,
        producer.answer().await,
        producer.answer().await,
        producer.answer().await,
    ];
    assert_eq!(answers[0].code, 0);
    assert_eq!(answers[1].code, Code::Unavailable as i32);
    assert!(
        answers[1].message.contains("test store is unavailable"),
        "{}",
        answers[1].message
    );
    assert_eq!(answers[2].code, Code::Internal as i32);
    assert!(
        answers[2].message.contains("checksum"),
        "{}",
        answers[2].message
    );
    assert_eq!(answers[3].code, 0);

    // The unary path maps them the same way.
    let status = server
        .client()
        .enqueue(pb::EnqueueRequest {
            queue: "q".into(),
            job: Some(job("down")),
            wait_for_room: false,
        })
        .await
        .expect_err("the store is down");
    assert_eq!(status.code(), Code::Unavailable);
}
