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
    let listeners = Listeners {
        grpc,
        metrics: Some(metrics),
    };
    let shutdown = async {
        termination_requested().await;
        // A second signal during the grace period: exit at once, as
        // systemd and Kubernetes users expect.
        tokio::spawn(async {
            termination_requested().await;
            tracing::warn!("second stop signal: exiting now, without waiting for calls in flight");
            std::process::exit(130);
        });
    };
    jobq::server::run(config, listeners, shutdown).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends).
async fn termination_requested() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
