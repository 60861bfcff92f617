//! How a client reaches the server: TLS settings and a bearer token.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use super::ClientError;

/// TLS and authentication for a connection; the default is plain text
/// without a token (a server on loopback).
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    tls: Option<ClientTlsConfig>,
    token: Option<MetadataValue<Ascii>>,
}

impl ClientOptions {
    /// Plain text, no token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects over TLS, trusting the server certificate if `ca_pem` (PEM
    /// CA certificates) signs it. The address must then be `https://`.
    pub fn tls_ca_pem(mut self, ca_pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.take().unwrap_or_default();
        self.tls = Some(tls.ca_certificate(Certificate::from_pem(ca_pem)));
        self
    }

    /// Presents this client certificate and key (PEM) to a server that
    /// asks for one (mutual TLS).
    pub fn tls_identity_pem(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
        let tls = self.tls.take().unwrap_or_default();
        self.tls = Some(tls.identity(Identity::from_pem(cert_pem, key_pem)));
        self
    }

    /// Checks the server certificate against this name instead of the
    /// address's host.
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        let tls = self.tls.take().unwrap_or_default();
        self.tls = Some(tls.domain_name(name));
        self
    }

    /// Sends `authorization: Bearer <token>` with every call.
    pub fn token(mut self, token: &str) -> Result<Self, ClientError> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::InvalidToken)?;
        // Kept out of Debug output and logs.
        value.set_sensitive(true);
        self.token = Some(value);
        Ok(self)
    }

    /// The endpoint for `address` with these settings, for callers that
    /// build their own channel.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ClientError> {
        let invalid = |source| ClientError::InvalidAddress {
            address: address.to_string(),
            source,
        };
        let endpoint = Endpoint::from_shared(address.to_string()).map_err(invalid)?;
        match &self.tls {
            None => Ok(endpoint),
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(invalid),
        }
    }

    /// The interceptor that adds the token to each call.
    pub fn bearer(&self) -> Bearer {
        Bearer {
            token: self.token.clone(),
        }
    }
}

/// Adds the bearer token, if any, to each call. Its `Debug` never shows
/// the token.
#[derive(Clone, Default)]
pub struct Bearer {
    token: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}
