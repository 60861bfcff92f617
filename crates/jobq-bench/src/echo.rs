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

/// Serves the echo service on `listener`, with tonic's defaults and
/// Nagle off, as jobq's server has it.
async fn serve_on(listener: TcpListener) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}

/// `jobq-bench echo-serve`: the echo service in a process of its own.
pub(crate) async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("echo baseline listening on {}", listener.local_addr()?);
    serve_on(listener).await
}

/// One of the baseline's measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EchoPart {
    /// Unary calls, one in flight per caller.
    Unary,
    /// A bidirectional stream per caller, sent into without waiting.
    Stream,
    /// A bidirectional stream per caller, one message in flight.
    PingPong,
}

/// A channel to the echo service: `--echo-server`, or one started in this
/// process.
pub(crate) async fn connect(args: &Args) -> anyhow::Result<Channel> {
    let address = match &args.echo_server {
        Some(address) => address.clone(),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(serve_on(listener));
            format!("http://{addr}")
        }
    };
    Channel::from_shared(address.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the echo baseline at {address}"))
}

pub(crate) async fn baseline(args: &Args) -> anyhow::Result<Baseline> {
    let channel = connect(args).await?;
    Ok(Baseline {
        unary: measure(args, &channel, EchoPart::Unary).await?,
        stream: measure(args, &channel, EchoPart::Stream).await?,
        ping_pong: measure(args, &channel, EchoPart::PingPong).await?,
    })
}

/// One baseline measurement over `channel`.
pub(crate) async fn measure(
    args: &Args,
    channel: &Channel,
    part: EchoPart,
) -> anyhow::Result<Report> {
    let body = payload(args.payload);
    let per_task = args.jobs / args.concurrency.max(1);
    let pid = args.echo_pid;
    let cpu = cpu_time(pid);
    let (elapsed, latency) = match part {
        EchoPart::Unary => unary(args, channel, &body, per_task).await?,
        EchoPart::Stream => stream(args, channel, &body, per_task).await?,
        EchoPart::PingPong => ping_pong(args, channel, &body, per_task).await?,
    };
    let name = match part {
        EchoPart::Unary => "echo baseline, unary",
        EchoPart::Stream => "echo baseline, bidi stream",
        EchoPart::PingPong => "echo baseline, stream, 1 in flight/caller",
    };
    Ok(Report {
        name: name.into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: cpu_since(pid, cpu),
    })
}

async fn unary(
    args: &Args,
    channel: &Channel,
    body: &Bytes,
    per_task: usize,
) -> anyhow::Result<(Duration, Histogram<u64>)> {
    run_tasks(args.concurrency, |_| {
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
    .await
}

async fn stream(
    args: &Args,
    channel: &Channel,
    body: &Bytes,
    per_task: usize,
) -> anyhow::Result<(Duration, Histogram<u64>)> {
    run_tasks(args.concurrency, |_| {
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
    .await
}

/// One message in flight per caller, as when each caller awaits its
/// answer before sending again: the round trip bounds the rate.
async fn ping_pong(
    args: &Args,
    channel: &Channel,
    body: &Bytes,
    per_task: usize,
) -> anyhow::Result<(Duration, Histogram<u64>)> {
    run_tasks(args.concurrency, |_| {
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
    .await
}
