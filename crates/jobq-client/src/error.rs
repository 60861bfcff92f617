//! Errors of the Rust client.

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is not a valid URI.
    #[error("invalid server address {address:?}: {source}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// No connection could be made before the connect deadline.
    #[error("could not connect to {address} within {waited:?}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// How long connecting was tried.
        waited: std::time::Duration,
        /// The last failure.
        source: tonic::transport::Error,
    },
    /// The token holds characters a header cannot carry.
    #[error("the token must be printable ASCII")]
    InvalidToken,
    /// The server answered with an error status.
    #[error("jobq answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

impl ClientError {
    /// The gRPC status, if the server answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Status(status) => Some(status),
            Self::InvalidAddress { .. } | Self::Connect { .. } | Self::InvalidToken => None,
        }
    }
}
