//! Reaching the server an operator command talks to: address, TLS and
//! token, from the command's flags.

use std::time::Duration;

use anyhow::Context;
use jobq::grpc::pb::{
    admin_client::AdminClient, job_queue_client::JobQueueClient, schedules_client::SchedulesClient,
};
use jobq_client::{Bearer, ClientOptions};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use super::Remote;

/// The Admin service, with the command's token on every call.
pub(super) type Admin = AdminClient<InterceptedService<Channel, Bearer>>;
/// The health service (open without a token; the token goes anyway).
pub(super) type Health = HealthClient<InterceptedService<Channel, Bearer>>;
/// The Schedules service, with the command's token on every call.
pub(super) type ScheduleClient = SchedulesClient<InterceptedService<Channel, Bearer>>;
/// The JobQueue service, with the command's token on every call.
pub(super) type Queues = JobQueueClient<InterceptedService<Channel, Bearer>>;

impl Remote {
    fn options(&self) -> anyhow::Result<ClientOptions> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut options = ClientOptions::new();
        if let Some(ca) = &self.tls_ca {
            options = options.tls_ca_pem(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.tls_identity_pem(read(cert)?, read(key)?);
        }
        if let Some(token) = &self.token {
            options = options.token(token)?;
        }
        Ok(options)
    }

    async fn connect(&self) -> anyhow::Result<(Channel, Bearer)> {
        let options = self.options()?;
        let channel = options
            .endpoint(&self.server)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach jobq at {}", self.server))?;
        Ok((channel, options.bearer()))
    }

    pub(super) async fn admin(&self) -> anyhow::Result<Admin> {
        let (channel, bearer) = self.connect().await?;
        Ok(AdminClient::with_interceptor(channel, bearer))
    }

    pub(super) async fn schedules(&self) -> anyhow::Result<ScheduleClient> {
        let (channel, bearer) = self.connect().await?;
        Ok(SchedulesClient::with_interceptor(channel, bearer))
    }

    pub(super) async fn health(&self) -> anyhow::Result<Health> {
        let (channel, bearer) = self.connect().await?;
        Ok(HealthClient::with_interceptor(channel, bearer))
    }

    pub(super) async fn job_queue(&self) -> anyhow::Result<Queues> {
        let (channel, bearer) = self.connect().await?;
        Ok(JobQueueClient::with_interceptor(channel, bearer))
    }
}
