//! Serving: the JobQueue, Admin and Schedules services with health and
//! reflection, the metrics endpoint and the web dashboard, from
//! already-bound listeners until a shutdown signal.

mod calls;
mod connections;
mod declared;
mod durable;
mod http;
mod postgres;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic_health::ServingStatus;

pub use connections::{ConnectionLimit, MAX_HANDSHAKES};

use calls::{BodyLimits, CallLayer};
use connections::Timeouts;

use crate::auth::{AuthLayer, Tokens};
use crate::config::{Config, Store};
use crate::engine::{Engine, MemoryEngine, SharedEngine, Starting};
use crate::grpc::pb::{
    self, admin_server::AdminServer, job_queue_server::JobQueueServer,
    schedules_server::SchedulesServer,
};
use crate::grpc::{AdminService, ClientFaultLayer, JobQueueService};
use crate::metrics::Metrics;
use crate::tls::{Tls, TlsFiles};

/// The sockets the server answers on, bound by the caller (tests bind
/// `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    /// For gRPC.
    pub grpc: TcpListener,
    /// For Prometheus scrapes of `/metrics`; `None` serves no metrics.
    pub metrics: Option<TcpListener>,
    /// For the web dashboard; `None` serves none.
    pub web: Option<TcpListener>,
}

/// The name health checks use for the JobQueue service.
pub const SERVICE_NAME: &str = "jobq.v1.JobQueue";
/// The name health checks use for the Admin service.
pub const ADMIN_SERVICE_NAME: &str = "jobq.v1.Admin";
/// The name health checks use for the Schedules service.
pub const SCHEDULES_SERVICE_NAME: &str = "jobq.v1.Schedules";

/// Serves `jobq.v1.JobQueue`, `jobq.v1.Admin`, `jobq.v1.Schedules`, health
/// and (unless switched off) reflection on `listeners.grpc`, over TLS and
/// behind token checks when configured, `/metrics` and `/healthz` on
/// `listeners.metrics`, and the web dashboard on `listeners.web`,
/// until `shutdown` completes, then shuts down gracefully:
/// 1. health (and `/healthz`) turns NOT_SERVING, for the server and for
///    each service;
/// 2. the engine refuses new enqueues and leases, open long-polls return
///    at once with what they have (nothing), and worker and producer
///    streams end with UNAVAILABLE;
/// 3. the listener closes and in-flight RPCs (acks, nacks) get up to
///    `shutdown_grace` to finish; what is still running then is cut off.
///
/// Without `config.data_dir`, jobs live only in this process's memory:
/// whatever is still queued or leased at exit is lost; the count is logged,
/// and is in the gauge `jobq_shutdown_jobs_in_memory` from the start of
/// shutdown. With it, the journal there is read back first: meanwhile the
/// port answers health checks with NOT_SERVING and every other call with
/// UNAVAILABLE, so nothing sees a half-recovered state. Then every change
/// is written to it, and it is synced and closed at exit; a journal that
/// cannot be read back, or fails later, stops the server with an error.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    // Checked before anything starts: a bad file stops the start at once.
    let declared = match &config.schedules_file {
        Some(path) => declared::read(path, &config.limits())?,
        None => Vec::new(),
    };
    let metrics = Arc::new(Metrics::with_named_queues(config.metrics_max_queues));
    if let Store::Postgres(url) = &config.store {
        let starting = Arc::new(Starting::new(
            postgres::STORE,
            "connecting to the postgres store".to_string(),
            config.engine().queue_defaults,
        ));
        let open = postgres::open(
            url.clone(),
            Arc::clone(&starting),
            declared,
            config.clone(),
            Arc::clone(&metrics),
        );
        return serve_opening(starting, open, metrics, config, listeners, shutdown).await;
    }
    let Some(dir) = config.data_dir.clone() else {
        let engine = memory_engine(&config, &metrics);
        if !declared.is_empty() {
            declared::apply(&engine, declared).await?;
        }
        return serve(Arc::new(engine), metrics, config, listeners, shutdown).await;
    };
    let starting = Arc::new(Starting::new(
        "memory",
        format!("replaying the journal in {}", dir.display()),
        config.engine().queue_defaults,
    ));
    // The opened journal, to close at exit however serving ends.
    let opened: Arc<Mutex<Option<durable::Durable>>> = Arc::default();
    let open = {
        let (starting, opened) = (Arc::clone(&starting), Arc::clone(&opened));
        let (config, metrics) = (config.clone(), Arc::clone(&metrics));
        async move {
            let durable = durable::open(&dir, &config, &metrics).await?;
            // Before the engine is handed over: once health says SERVING,
            // the declared schedules are in place.
            if !declared.is_empty() {
                declared::apply(&durable.engine, declared).await?;
            }
            starting.ready(Arc::new(durable.engine.clone()));
            let journal = durable.journal.clone();
            *opened.lock().unwrap_or_else(|e| e.into_inner()) = Some(durable);
            let failed: StoreFailed = Box::pin(async move {
                let why = journal.failed().await;
                anyhow::anyhow!(
                    "the journal in {} failed ({why}); stopping, since nothing more can be made durable",
                    dir.display()
                )
            });
            Ok(failed)
        }
    };
    let served = serve_opening(starting, open, metrics, config, listeners, shutdown).await;
    let durable = opened.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(durable) = durable {
        durable.close().await;
    }
    served
}

/// Completes, with why, if an opened engine's store fails for good.
pub type StoreFailed = Pin<Box<dyn Future<Output = anyhow::Error> + Send>>;

/// The in-memory engine `config` asks for, reporting job timings to
/// `metrics`.
pub fn memory_engine(config: &Config, metrics: &Metrics) -> MemoryEngine {
    MemoryEngine::with_observer(config.engine(), metrics.job_observer())
}

/// As [`run`], over an engine the caller made (and may keep a handle to,
/// to look inside in tests), with the metrics it reports to.
pub async fn serve(
    engine: SharedEngine,
    metrics: Arc<Metrics>,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let open: Option<std::future::Ready<anyhow::Result<StoreFailed>>> = None;
    serve_with(engine, open, metrics, config, listeners, shutdown).await
}

/// As [`serve`], over an engine that `open` is still opening: until it
/// completes, health reports NOT_SERVING and `starting` refuses every call
/// with UNAVAILABLE; once it has handed `starting` the engine, health
/// reports SERVING. If `open` fails, the server stops with its error; if
/// the store fails later, with that.
pub async fn serve_opening(
    starting: Arc<Starting>,
    open: impl Future<Output = anyhow::Result<StoreFailed>>,
    metrics: Arc<Metrics>,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_with(starting, Some(open), metrics, config, listeners, shutdown).await
}

/// Serves `engine`, once `open` (if any) has opened it.
async fn serve_with(
    engine: SharedEngine,
    open: Option<impl Future<Output = anyhow::Result<StoreFailed>>>,
    metrics: Arc<Metrics>,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let listener = listeners.grpc;
    let local = listener.local_addr()?;
    let (tokens, tls) = security(&config)?;
    warn_if_exposed(local, tokens.as_ref(), tls.as_deref());
    let auth = tokens.is_some();
    let web = match listeners.web {
        Some(listener) => Some(web_dashboard(listener, &config, tokens.as_ref())?),
        None => None,
    };

    // Every task the server spawns, so shutdown can wait for them all.
    let tasks = TaskTracker::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    // Set before the port is served, so no call sees it change.
    let mut opened = open.is_none();
    let initial = if opened {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    set_health(&health, initial).await;
    // What `/healthz` reports, beside gRPC health.
    let serving = Arc::new(AtomicBool::new(opened));
    let router = router(&engine, &metrics, &config, tokens, health_service, &tasks)?;

    let stop = CancellationToken::new();
    let limit = Arc::new(ConnectionLimit::new(config.max_connections));
    let timeouts = Timeouts {
        handshake: config.handshake_timeout,
        idle: (!config.idle_timeout.is_zero()).then_some(config.idle_timeout),
    };
    let mut serve: Serving = match &tls {
        None => Box::pin(router.serve_with_incoming_shutdown(
            connections::plain(listener, limit, timeouts, stop.clone(), &tasks),
            stop.clone().cancelled_owned(),
        )),
        Some(tls) => {
            tasks.spawn(Arc::clone(tls).watch(config.tls_reload_interval, stop.clone()));
            Box::pin(router.serve_with_incoming_shutdown(
                connections::tls(
                    listener,
                    limit,
                    Arc::clone(tls),
                    timeouts,
                    stop.clone(),
                    &tasks,
                ),
                stop.clone().cancelled_owned(),
            ))
        }
    };
    tracing::info!(
        addr = %local,
        version = env!("CARGO_PKG_VERSION"),
        store = engine.store_kind(),
        auth,
        tls = tls.is_some(),
        mutual_tls = tls.as_ref().is_some_and(|t| t.mutual()),
        reflection = config.reflection,
        "jobq listening"
    );
    if opened {
        tracing::info!(addr = %local, "jobq serving");
    }
    // The metrics endpoint outlives the gRPC one, so the shutdown's count
    // of jobs about to be dropped can be scraped during the grace period.
    let metrics_stop = CancellationToken::new();
    if let Some(listener) = listeners.metrics {
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        tasks.spawn(http::serve_metrics(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&engine),
            Arc::clone(&serving),
            metrics_stop.clone(),
        ));
    }
    // Stops the metrics endpoint however this function returns.
    let metrics_stop = metrics_stop.drop_guard();
    // The dashboard stops with the gRPC port, or however this function
    // returns.
    let web_stop = stop.child_token();
    if let Some((listener, settings)) = web {
        tasks.spawn(crate::web::serve(
            listener,
            Arc::clone(&engine),
            settings,
            web_stop.clone(),
        ));
    }
    let _web_stop = web_stop.drop_guard();

    let mut shutdown = pin!(shutdown);
    let mut open = pin!(open);
    let mut failed: StoreFailed = Box::pin(std::future::pending());
    // Whether a store elsewhere (a database) can be reached: health
    // follows it once the engine is open.
    let mut available = if opened { engine.available() } else { None };
    loop {
        tokio::select! {
            result = &mut serve => return Ok(result?),
            () = &mut shutdown => break,
            done = async {
                match open.as_mut().as_pin_mut() {
                    Some(open) => open.await,
                    None => std::future::pending().await,
                }
            }, if !opened => match done {
                Ok(store_failed) => {
                    opened = true;
                    failed = store_failed;
                    available = engine.available();
                    // The store may have gone away since it opened.
                    let up = available.as_ref().is_none_or(|rx| *rx.borrow());
                    let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
                    set_health(&health, status).await;
                    serving.store(up, Ordering::Relaxed);
                    tracing::info!(addr = %local, "jobq serving");
                }
                Err(error) => {
                    stop.cancel();
                    let _ = tokio::time::timeout(config.shutdown_grace, &mut serve).await;
                    return Err(error);
                }
            },
            why = &mut failed => return Err(why),
            up = async {
                match available.as_mut() {
                    Some(rx) => match rx.changed().await {
                        Ok(()) => *rx.borrow_and_update(),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            } => {
                let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
                set_health(&health, status).await;
                serving.store(up, Ordering::Relaxed);
            }
        }
    }
    tracing::info!(grace = ?config.shutdown_grace, "shutting down");
    serving.store(false, Ordering::Relaxed);
    set_health(&health, ServingStatus::NotServing).await;
    let stopping = Stopping {
        engine,
        metrics,
        tasks,
        grace_ends: tokio::time::Instant::now() + config.shutdown_grace,
    };
    stopping.run(serve, stop, metrics_stop).await?;
    tracing::info!("jobq stopped");
    Ok(())
}

/// The gRPC server's future, until it has stopped.
type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// The gRPC router: both services behind the token checks, health, and
/// (unless switched off) reflection.
type JobqRouter = tonic::transport::server::Router<
    tower_layer::Stack<
        CallLayer,
        tower_layer::Stack<ClientFaultLayer, tower_layer::Stack<AuthLayer, tower_layer::Identity>>,
    >,
>;

/// Bearer tokens and TLS, when configured.
fn security(config: &Config) -> anyhow::Result<(Option<Tokens>, Option<Arc<Tls>>)> {
    let tokens = Tokens::load(
        config.auth_tokens_file.as_deref(),
        std::env::var(crate::auth::TOKENS_ENV).ok().as_deref(),
    )?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca.clone(),
        })?),
        _ => None,
    };
    Ok((tokens, tls))
}

/// Health for the server as a whole and for each service.
async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in [SERVICE_NAME, ADMIN_SERVICE_NAME, SCHEDULES_SERVICE_NAME, ""] {
        health.set_service_status(service, status).await;
    }
}

fn router(
    engine: &SharedEngine,
    metrics: &Metrics,
    config: &Config,
    tokens: Option<Tokens>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    tasks: &TaskTracker,
) -> anyhow::Result<JobqRouter> {
    let service = JobQueueService::new(
        Arc::clone(engine),
        config.limits(),
        metrics.rpc(),
        tasks.clone(),
    );
    // Just above the payload limit: an oversized payload gets jobq's own
    // INVALID_ARGUMENT naming the limit, and a giant frame is refused from
    // its length prefix, before it is read.
    let jobq = JobQueueServer::new(service)
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes);
    // One operator service behind both operator APIs.
    let operator = AdminService::new(Arc::clone(engine), config.limits(), metrics.rpc());
    let schedules = SchedulesServer::new(operator.clone())
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes);
    let admin = AdminServer::new(operator)
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes);

    // Both reflection versions: grpcurl and other tools ask for either.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = if config.reflection {
        (
            Some(reflection().build_v1()?),
            Some(reflection().build_v1alpha()?),
        )
    } else {
        (None, None)
    };

    let mut builder = Server::builder()
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(config.http2_max_pending_reset_streams))
        .http2_max_local_error_reset_streams(Some(config.http2_max_local_error_reset_streams))
        .http2_keepalive_interval(Some(config.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout))
        .http2_max_header_list_size(config.http2_max_header_list_bytes);
    if let Some(age) = config.max_connection_age {
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(config.shutdown_grace);
    }
    Ok(builder
        .layer(AuthLayer::new(tokens))
        .layer(ClientFaultLayer::new(config.max_request_bytes))
        .layer(CallLayer::new(
            BodyLimits {
                stall: config.request_stall_timeout,
                per_connection: config.max_pending_request_bytes_per_connection,
                total: config.max_pending_request_bytes,
            },
            metrics.pending_request_bytes(),
        ))
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(jobq)
        .add_service(admin)
        .add_service(schedules))
}

/// What shutting down waits for, within the grace period.
struct Stopping {
    engine: SharedEngine,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    grace_ends: tokio::time::Instant,
}

impl Stopping {
    /// Refuses new work, lets calls in flight finish, then waits for every
    /// task the server and the engine spawned, all by the end of the grace
    /// period.
    async fn run(
        self,
        mut serve: Serving,
        stop: CancellationToken,
        metrics_stop: tokio_util::sync::DropGuard,
    ) -> anyhow::Result<()> {
        let engine = self.engine.as_ref();
        engine.shutdown();
        let in_memory = engine.store_kind() == "memory";
        if in_memory {
            self.metrics
                .set_shutdown_jobs_in_memory(jobs_held(engine).await);
        }
        stop.cancel();
        match tokio::time::timeout_at(self.grace_ends, &mut serve).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!("grace period ran out; RPCs still in flight were cut off"),
        }
        drop(metrics_stop);
        self.tasks.close();
        let stopped = async {
            self.tasks.wait().await;
            engine.stopped().await;
        };
        if tokio::time::timeout_at(self.grace_ends, stopped)
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tasks.len(),
                "grace period ran out with server tasks still running; they end with the process"
            );
        }
        if in_memory {
            let held = jobs_held(engine).await;
            self.metrics.set_shutdown_jobs_in_memory(held);
            if held > 0 {
                tracing::warn!(jobs = held, "in-memory jobs dropped at exit");
            }
        }
        Ok(())
    }
}

/// Jobs the engine holds, or 0 when it cannot say.
async fn jobs_held(engine: &dyn Engine) -> usize {
    engine.stats().await.map_or(0, |stats| stats.jobs_held)
}

/// The dashboard's settings, once its address is checked: without tokens
/// it serves only loopback, unless told otherwise (and then warns).
fn web_dashboard(
    listener: TcpListener,
    config: &Config,
    tokens: Option<&Tokens>,
) -> anyhow::Result<(TcpListener, crate::web::WebSettings)> {
    let addr = listener.local_addr()?;
    let exposed = !addr.ip().is_loopback();
    if tokens.is_none() && exposed {
        if !config.web_allow_unauthenticated {
            anyhow::bail!(
                "--web-listen {addr} is reachable from other machines and no auth tokens are configured: anyone reaching it could read payloads and delete jobs. Set --auth-tokens-file or JOBQ_AUTH_TOKENS (the dashboard then asks for a viewer or admin token), listen on 127.0.0.1, or pass --web-allow-unauthenticated"
            );
        }
        tracing::warn!(
            addr = %addr,
            "THE WEB DASHBOARD HAS NO LOGIN on a non-loopback address: anyone who reaches this port can read payloads and delete jobs. Set --auth-tokens-file or JOBQ_AUTH_TOKENS."
        );
    } else if tokens.is_some() && exposed {
        tracing::info!(
            addr = %addr,
            "the web dashboard serves plain HTTP: put a TLS proxy or Ingress in front, or tokens typed into its login cross the network in clear text"
        );
    }
    tracing::info!(url = %format!("http://{addr}/"), "web dashboard");
    let settings = crate::web::WebSettings {
        tokens: tokens.cloned(),
        loopback_only: tokens.is_none() && !config.web_allow_unauthenticated,
        trace_url: config.web_trace_url.clone(),
        max_lease: config.max_lease_duration,
    };
    Ok((listener, settings))
}

/// Warns, loudly, when the gRPC port is reachable from other machines
/// without authentication, or with tokens sent in clear text.
fn warn_if_exposed(local: std::net::SocketAddr, tokens: Option<&Tokens>, tls: Option<&Tls>) {
    if local.ip().is_loopback() {
        return;
    }
    match (tokens, tls) {
        (None, _) => tracing::warn!(
            addr = %local,
            "AUTHENTICATION IS OFF on a non-loopback address: anyone who reaches this port can enqueue, take, and delete jobs. Set --auth-tokens-file or JOBQ_AUTH_TOKENS."
        ),
        (Some(_), None) => tracing::warn!(
            addr = %local,
            "bearer tokens are on but TLS is off: tokens cross the network in clear text. Set --tls-cert and --tls-key."
        ),
        (Some(_), Some(_)) => {}
    }
}
