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
    /// build their own channel. `address` is a URL (`http://host:port`,
    /// `https://host:port`) or a bare `host:port`, which means `https://`
    /// when TLS is configured and `http://` otherwise.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ClientError> {
        let invalid = |source| ClientError::InvalidAddress {
            address: address.to_string(),
            source,
        };
        let url = with_scheme(address, self.tls.is_some());
        let endpoint = Endpoint::from_shared(url).map_err(invalid)?;
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

/// `address` as a URL: unchanged if it has a scheme, else with the one TLS
/// implies.
fn with_scheme(address: &str, tls: bool) -> String {
    if address.contains("://") {
        address.to_string()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_and_port_takes_the_scheme_tls_implies() {
        assert_eq!(
            with_scheme("127.0.0.1:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            with_scheme("jobq.svc:50051", true),
            "https://jobq.svc:50051"
        );
        assert_eq!(with_scheme("https://jobq:1", false), "https://jobq:1");
        let endpoint = ClientOptions::new()
            .endpoint("localhost:50051")
            .expect("valid");
        assert_eq!(endpoint.uri().to_string(), "http://localhost:50051/");
    }
}
