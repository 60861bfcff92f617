//! The one place where errors become gRPC statuses.

use tonic::Status;

use crate::broker::BrokerError;
use crate::queue::QueueError;

use super::convert::InvalidField;

/// The status for a broker refusal. No wildcard arm: a new error variant
/// must be given its code here.
pub fn from_broker(error: BrokerError) -> Status {
    let message = error.to_string();
    match error {
        BrokerError::Queue(queue_error) => match queue_error {
            QueueError::Full { .. } => Status::resource_exhausted(message),
            QueueError::LeaseNotFound { .. } | QueueError::JobNotFound { .. } => {
                Status::not_found(message)
            }
            QueueError::JobLeased { .. } | QueueError::JobNotDead { .. } => {
                Status::failed_precondition(message)
            }
        },
        BrokerError::MemoryExhausted { .. } | BrokerError::TooManyQueues { .. } => {
            Status::resource_exhausted(message)
        }
        BrokerError::QueueNotFound(_) | BrokerError::JobNotFound(_) => Status::not_found(message),
        BrokerError::QueueBusy { .. } => Status::failed_precondition(message),
        BrokerError::ShuttingDown => Status::unavailable(message),
    }
}

impl From<InvalidField> for Status {
    fn from(error: InvalidField) -> Self {
        Status::invalid_argument(error.to_string())
    }
}
