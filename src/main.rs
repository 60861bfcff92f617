//! The `jobq` binary: the server by default, or an operator command.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cli::{Action, Cli};
use jobq::config::Config;
use jobq::server::Listeners;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().into_action() {
        Action::Serve(config) => serve(config).await,
        Action::Migrate(store) => migrate(store).await,
        Action::Remote(command) => cli::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {}", causes(&error)),
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, outermost first, with a cause that only
/// repeats the words before it left out ("tcp connect error: tcp connect
/// error" is said once).
fn causes(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.last().is_none_or(|last| !last.ends_with(&text)) {
            said.push(text);
        }
    }
    said.join(": ")
}

/// `jobq migrate`: the schema brought up to date, alone.
async fn migrate(store: String) -> anyhow::Result<()> {
    if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
        anyhow::bail!(
            "--store must be a postgres://user@host/database URL: only a postgres store has a schema to migrate"
        );
    }
    let options = jobq::engine::postgres::PgOptions::new(store);
    let version = jobq::engine::postgres::migrate(&options).await?;
    println!("the postgres store's schema is at version {version}");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Kept until exit: dropping it flushes buffered traces.
    let _telemetry = jobq::telemetry::init(&config.telemetry())?;
    config.validate()?;
    let grpc = TcpListener::bind(config.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics = TcpListener::bind(config.metrics_listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {} for metrics", config.metrics_listen))?;
    let web = match config.web_address() {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the web dashboard"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        grpc,
        metrics: Some(metrics),
        web,
    };
    // Listening from before the server serves, on streams that remember
    // a signal until it is read: so neither the first signal nor a second
    // one right behind it can fall between two listeners and be lost.
    let mut signals = StopSignals::listen()?;
    let shutdown = async move {
        signals.next().await;
        // A second signal during the grace period: exit at once, as
        // systemd and Kubernetes users expect.
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second stop signal: exiting now, without waiting for calls in flight");
            std::process::exit(130);
        });
    };
    jobq::server::run(config, listeners, shutdown).await
}

/// SIGINT (Ctrl-C) and SIGTERM (what Kubernetes sends).
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Completes on the next signal, or on one that came since the last
    /// call.
    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("Ctrl-C received"),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}
