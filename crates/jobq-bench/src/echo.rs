//! The transport's ceiling: a plain tonic echo service, measured in the
//! same run as jobq.

use super::*;

/// The least a tonic service can do.
pub(crate) struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    type EchoStreamStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<EchoStreamResponse, tonic::Status>> + Send>,
    >;

    async fn echo_stream(
        &self,
        request: tonic::Request<tonic::Streaming<EchoStreamRequest>>,
    ) -> Result<tonic::Response<Self::EchoStreamStream>, tonic::Status> {
        let out = request
            .into_inner()
            .map(|m| m.map(|m| EchoStreamResponse { payload: m.payload }));
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

/// The transport's ceilings, measured on a plain tonic echo service.
pub(crate) struct Baseline {
    /// Unary calls, one in flight per caller.
    pub(crate) unary: Report,
    /// A bidirectional stream per caller, sent into without waiting.
    pub(crate) stream: Report,
    /// A bidirectional stream per caller, one message in flight.
    pub(crate) ping_pong: Report,
}

impl Baseline {
    pub(crate) fn print(&self) {
        self.unary.print(None);
        self.stream.print(None);
        self.ping_pong.print(None);
    }
}

pub(crate) async fn baseline(args: &Args) -> anyhow::Result<Baseline> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let body = payload(args.payload);
    let per_task = args.jobs / args.concurrency.max(1);
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            for _ in 0..per_task {
                let start = Instant::now();
                echo.echo(EchoRequest {
                    payload: body.clone(),
                })
                .await?;
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let unary = Report {
        name: "echo baseline, unary".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            let (tx, rx) = mpsc::channel(256);
            let mut replies = echo
                .echo_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let sender = tokio::spawn(async move {
                for _ in 0..per_task {
                    let message = EchoStreamRequest {
                        payload: body.clone(),
                    };
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            let mut got = 0;
            while got < per_task {
                if replies.message().await?.is_none() {
                    break;
                }
                got += 1;
            }
            sender.await?;
            record(&mut h, start.elapsed() / per_task.max(1) as u32);
            Ok(h)
        }
    })
    .await?;
    let stream = Report {
        name: "echo baseline, bidi stream".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    // One message in flight per caller, as when each caller awaits its
    // answer before sending again: the round trip bounds the rate.
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            let (tx, rx) = mpsc::channel(1);
            let mut replies = echo
                .echo_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            for _ in 0..per_task {
                let start = Instant::now();
                tx.send(EchoStreamRequest {
                    payload: body.clone(),
                })
                .await?;
                anyhow::ensure!(replies.message().await?.is_some(), "echo stream ended");
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let ping_pong = Report {
        name: "echo baseline, stream, 1 in flight/caller".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    Ok(Baseline {
        unary,
        stream,
        ping_pong,
    })
}
