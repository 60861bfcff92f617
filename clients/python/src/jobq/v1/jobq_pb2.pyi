import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NackOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NACK_OUTCOME_UNSPECIFIED: _ClassVar[NackOutcome]
    NACK_OUTCOME_RETRY_SCHEDULED: _ClassVar[NackOutcome]
    NACK_OUTCOME_DEAD_LETTERED: _ClassVar[NackOutcome]
NACK_OUTCOME_UNSPECIFIED: NackOutcome
NACK_OUTCOME_RETRY_SCHEDULED: NackOutcome
NACK_OUTCOME_DEAD_LETTERED: NackOutcome

class NewJob(_message.Message):
    __slots__ = ("payload", "metadata", "priority", "delay", "not_before", "max_attempts", "idempotency_key")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    metadata: _containers.ScalarMap[str, str]
    priority: int
    delay: _duration_pb2.Duration
    not_before: _timestamp_pb2.Timestamp
    max_attempts: int
    idempotency_key: str
    def __init__(self, payload: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_attempts: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "queue", "payload", "metadata", "priority", "max_attempts", "enqueue_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ENQUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    queue: str
    payload: bytes
    metadata: _containers.ScalarMap[str, str]
    priority: int
    max_attempts: int
    enqueue_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., queue: _Optional[str] = ..., payload: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., max_attempts: _Optional[int] = ..., enqueue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnqueueRequest(_message.Message):
    __slots__ = ("queue", "job", "wait_for_room")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_ROOM_FIELD_NUMBER: _ClassVar[int]
    queue: str
    job: NewJob
    wait_for_room: bool
    def __init__(self, queue: _Optional[str] = ..., job: _Optional[_Union[NewJob, _Mapping]] = ..., wait_for_room: _Optional[bool] = ...) -> None: ...

class EnqueueResponse(_message.Message):
    __slots__ = ("job_id", "duplicate")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    duplicate: bool
    def __init__(self, job_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class BatchEnqueueRequest(_message.Message):
    __slots__ = ("queue", "jobs", "wait_for_room")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_ROOM_FIELD_NUMBER: _ClassVar[int]
    queue: str
    jobs: _containers.RepeatedCompositeFieldContainer[NewJob]
    wait_for_room: bool
    def __init__(self, queue: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[NewJob, _Mapping]]] = ..., wait_for_room: _Optional[bool] = ...) -> None: ...

class BatchEnqueueResponse(_message.Message):
    __slots__ = ("job_ids", "duplicates")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    duplicates: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., duplicates: _Optional[_Iterable[bool]] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("queue", "max_jobs", "lease_duration", "wait_time")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIME_FIELD_NUMBER: _ClassVar[int]
    queue: str
    max_jobs: int
    lease_duration: _duration_pb2.Duration
    wait_time: _duration_pb2.Duration
    def __init__(self, queue: _Optional[str] = ..., max_jobs: _Optional[int] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("leases", "queue_paused")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_PAUSED_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    queue_paused: bool
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., queue_paused: _Optional[bool] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("job", "lease_token", "attempt", "lease_deadline", "lease_duration")
    JOB_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    job: Job
    lease_token: str
    attempt: int
    lease_deadline: _timestamp_pb2.Timestamp
    lease_duration: _duration_pb2.Duration
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., lease_token: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("queue", "lease_tokens")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    lease_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue: _Optional[str] = ..., lease_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ("acked_count",)
    ACKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    acked_count: int
    def __init__(self, acked_count: _Optional[int] = ...) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("queue", "lease_token", "retry_delay", "dead_letter", "reason")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    queue: str
    lease_token: str
    retry_delay: _duration_pb2.Duration
    dead_letter: bool
    reason: str
    def __init__(self, queue: _Optional[str] = ..., lease_token: _Optional[str] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead_letter: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class NackResponse(_message.Message):
    __slots__ = ("outcome", "retry_time")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RETRY_TIME_FIELD_NUMBER: _ClassVar[int]
    outcome: NackOutcome
    retry_time: _timestamp_pb2.Timestamp
    def __init__(self, outcome: _Optional[_Union[NackOutcome, str]] = ..., retry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ("queue", "lease_token", "lease_duration")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    queue: str
    lease_token: str
    lease_duration: _duration_pb2.Duration
    def __init__(self, queue: _Optional[str] = ..., lease_token: _Optional[str] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExtendLeaseResponse(_message.Message):
    __slots__ = ("lease_deadline",)
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    lease_deadline: _timestamp_pb2.Timestamp
    def __init__(self, lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamLeasesRequest(_message.Message):
    __slots__ = ("open", "grant", "ack", "nack", "extend", "drain")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    EXTEND_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    open: StreamOpen
    grant: StreamGrant
    ack: StreamAck
    nack: StreamNack
    extend: StreamExtend
    drain: StreamDrain
    def __init__(self, open: _Optional[_Union[StreamOpen, _Mapping]] = ..., grant: _Optional[_Union[StreamGrant, _Mapping]] = ..., ack: _Optional[_Union[StreamAck, _Mapping]] = ..., nack: _Optional[_Union[StreamNack, _Mapping]] = ..., extend: _Optional[_Union[StreamExtend, _Mapping]] = ..., drain: _Optional[_Union[StreamDrain, _Mapping]] = ...) -> None: ...

class StreamDrain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamOpen(_message.Message):
    __slots__ = ("queue", "credits", "lease_duration")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    queue: str
    credits: int
    lease_duration: _duration_pb2.Duration
    def __init__(self, queue: _Optional[str] = ..., credits: _Optional[int] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StreamGrant(_message.Message):
    __slots__ = ("credits",)
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    credits: int
    def __init__(self, credits: _Optional[int] = ...) -> None: ...

class StreamAck(_message.Message):
    __slots__ = ("request_id", "lease_token")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    lease_token: str
    def __init__(self, request_id: _Optional[int] = ..., lease_token: _Optional[str] = ...) -> None: ...

class StreamNack(_message.Message):
    __slots__ = ("request_id", "lease_token", "retry_delay", "dead_letter", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    lease_token: str
    retry_delay: _duration_pb2.Duration
    dead_letter: bool
    reason: str
    def __init__(self, request_id: _Optional[int] = ..., lease_token: _Optional[str] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead_letter: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class StreamExtend(_message.Message):
    __slots__ = ("request_id", "lease_token", "lease_duration")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    lease_token: str
    lease_duration: _duration_pb2.Duration
    def __init__(self, request_id: _Optional[int] = ..., lease_token: _Optional[str] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StreamLeasesResponse(_message.Message):
    __slots__ = ("lease", "result", "queue_state")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_STATE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    result: StreamResult
    queue_state: QueueState
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., result: _Optional[_Union[StreamResult, _Mapping]] = ..., queue_state: _Optional[_Union[QueueState, _Mapping]] = ...) -> None: ...

class QueueState(_message.Message):
    __slots__ = ("paused",)
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    def __init__(self, paused: _Optional[bool] = ...) -> None: ...

class StreamEnqueueRequest(_message.Message):
    __slots__ = ("request_id", "queue", "job")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    queue: str
    job: NewJob
    def __init__(self, request_id: _Optional[int] = ..., queue: _Optional[str] = ..., job: _Optional[_Union[NewJob, _Mapping]] = ...) -> None: ...

class StreamEnqueueResponse(_message.Message):
    __slots__ = ("request_id", "code", "message", "job_id", "duplicate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    code: int
    message: str
    job_id: str
    duplicate: bool
    def __init__(self, request_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., job_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("request_id", "code", "message", "nack_outcome", "time")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NACK_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    code: int
    message: str
    nack_outcome: NackOutcome
    time: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., nack_outcome: _Optional[_Union[NackOutcome, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
