//! The one place where errors become gRPC statuses.

use tonic::Status;

use crate::engine::EngineError;
use crate::queue::QueueError;

use super::validate::InvalidField;

/// The status for an engine's refusal or failure. No wildcard arm: a new
/// error variant must be given its code here.
pub(super) fn from_engine(error: EngineError) -> Status {
    let message = error.to_string();
    match error {
        EngineError::Queue(queue_error) => match queue_error {
            QueueError::Full { .. } => Status::resource_exhausted(message),
            QueueError::LeaseNotFound { .. } | QueueError::JobNotFound { .. } => {
                Status::not_found(message)
            }
            QueueError::JobLeased { .. } | QueueError::JobNotDead { .. } => {
                Status::failed_precondition(message)
            }
        },
        EngineError::MemoryExhausted { .. }
        | EngineError::TooManyQueues { .. }
        | EngineError::TooManySchedules { .. }
        | EngineError::DataDirFull { .. } => Status::resource_exhausted(message),
        EngineError::QueueNotFound(_)
        | EngineError::JobNotFound(_)
        | EngineError::ScheduleNotFound(_) => Status::not_found(message),
        EngineError::QueueBusy { .. } => Status::failed_precondition(message),
        EngineError::BackoffOutOfOrder { .. } => Status::invalid_argument(message),
        EngineError::ShuttingDown | EngineError::StoreUnavailable { .. } => {
            Status::unavailable(message)
        }
        EngineError::StoreFailed { .. } => Status::internal(message),
    }
}

impl From<InvalidField> for Status {
    fn from(error: InvalidField) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;
    use crate::queue::{JobId, LeaseToken, QueueName};

    /// Every error variant, with the code it must answer and its own
    /// message. (A new variant is caught at compile time by the match in
    /// `from_engine`; this table pins the code each one gets.)
    #[test]
    fn every_error_variant_maps_to_its_status_code() {
        let queue = QueueName::new("q").expect("name");
        let job = JobId::from_u128(1);
        let token = LeaseToken { job, delivery: 1 };
        let table: Vec<(EngineError, Code)> = vec![
            (
                QueueError::Full {
                    queue: queue.clone(),
                    capacity: 1,
                    held: 1,
                    offered: 1,
                }
                .into(),
                Code::ResourceExhausted,
            ),
            (
                QueueError::LeaseNotFound {
                    queue: queue.clone(),
                    token,
                }
                .into(),
                Code::NotFound,
            ),
            (
                QueueError::JobNotFound {
                    queue: queue.clone(),
                    job,
                }
                .into(),
                Code::NotFound,
            ),
            (
                QueueError::JobLeased {
                    queue: queue.clone(),
                    job,
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                QueueError::JobNotDead {
                    queue: queue.clone(),
                    job,
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                EngineError::MemoryExhausted {
                    limit: 1,
                    used: 1,
                    offered: 1,
                },
                Code::ResourceExhausted,
            ),
            (
                EngineError::TooManyQueues {
                    queue: queue.clone(),
                    limit: 1,
                },
                Code::ResourceExhausted,
            ),
            (
                EngineError::DataDirFull {
                    free: 10,
                    needed: 20,
                    held: 1,
                },
                Code::ResourceExhausted,
            ),
            (EngineError::JobNotFound(job), Code::NotFound),
            (EngineError::QueueNotFound(queue.clone()), Code::NotFound),
            (
                EngineError::QueueBusy {
                    queue: queue.clone(),
                    leased: 1,
                },
                Code::FailedPrecondition,
            ),
            (EngineError::ShuttingDown, Code::Unavailable),
            (
                EngineError::BackoffOutOfOrder {
                    base: Duration::from_secs(2),
                    cap: Duration::from_secs(1),
                },
                Code::InvalidArgument,
            ),
            (
                EngineError::StoreUnavailable {
                    store: "postgres",
                    reason: "connection refused".into(),
                },
                Code::Unavailable,
            ),
            (
                EngineError::StoreFailed {
                    store: "journal",
                    reason: "checksum mismatch".into(),
                },
                Code::Internal,
            ),
        ];
        for (error, code) in table {
            let message = error.to_string();
            let status = from_engine(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn an_invalid_field_is_invalid_argument_naming_the_field() {
        let status = Status::from(InvalidField {
            field: "job.payload".into(),
            problem: "is 11 bytes; the limit is 10".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "job.payload: is 11 bytes; the limit is 10"
        );
    }

    #[test]
    fn store_errors_name_the_store() {
        let status = from_engine(EngineError::StoreUnavailable {
            store: "postgres",
            reason: "connection refused".into(),
        });
        assert!(
            status.message().contains("postgres"),
            "{}",
            status.message()
        );
    }
}
