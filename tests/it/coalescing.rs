//! The server writes what is ready together: many messages ready at once
//! leave in a few HTTP/2 DATA frames, not one frame (and one write) each.
//! Counted on raw HTTP/2, since the generated client hides frames.

use crate::common::TestServer;
use crate::common::raw::{RawCall, grpc_frame};
use bytes::{BufMut, BytesMut};
use jobq::grpc::pb;
use prost::Message;

/// Messages in one burst; one frame each would be this many frames.
const BURST: usize = 100;
/// At most this many frames for the burst: 100 small messages fit in one
/// 16 KiB frame, and the server may flush a few times along the way.
const MOST_FRAMES: usize = 10;

#[tokio::test]
async fn a_lease_stream_pushes_ready_jobs_together() {
    let server = TestServer::start().await;
    let jobs = (0..BURST)
        .map(|i| crate::common::job(&format!("job {i}")))
        .collect();
    server
        .client()
        .batch_enqueue(pb::BatchEnqueueRequest {
            queue: "burst".into(),
            jobs,
            wait_for_room: false,
        })
        .await
        .expect("enqueue");

    let mut call = RawCall::start(server.addr, "/jobq.v1.JobQueue/StreamLeases").await;
    call.send(grpc_frame(&pb::StreamLeasesRequest {
        kind: Some(pb::stream_leases_request::Kind::Open(pb::StreamOpen {
            queue: "burst".into(),
            credits: u32::try_from(BURST).expect("small"),
            lease_duration: None,
        })),
    }));
    let leases = call.messages(BURST).await;
    assert_eq!(leases.len(), BURST);
    for lease in leases {
        let message = pb::StreamLeasesResponse::decode(lease).expect("decodes");
        assert!(matches!(
            message.kind,
            Some(pb::stream_leases_response::Kind::Lease(_))
        ));
    }
    assert!(
        call.frames <= MOST_FRAMES,
        "{BURST} leases came in {} DATA frames",
        call.frames
    );
}

#[tokio::test]
async fn a_producer_streams_answers_leave_together() {
    let server = TestServer::start().await;
    let mut call = RawCall::start(server.addr, "/jobq.v1.JobQueue/StreamEnqueue").await;
    let mut burst = BytesMut::new();
    for i in 0..BURST {
        burst.put(grpc_frame(&pb::StreamEnqueueRequest {
            request_id: i as u64,
            queue: "burst".into(),
            job: Some(crate::common::job("x")),
        }));
    }
    call.send(burst.freeze());
    let answers = call.messages(BURST).await;
    let ids: Vec<u64> = answers
        .into_iter()
        .map(|a| {
            let answer = pb::StreamEnqueueResponse::decode(a).expect("decodes");
            assert_eq!(answer.code, 0, "{}", answer.message);
            answer.request_id
        })
        .collect();
    assert_eq!(ids, (0..BURST as u64).collect::<Vec<_>>());
    assert!(
        call.frames <= MOST_FRAMES,
        "{BURST} answers came in {} DATA frames",
        call.frames
    );
}
