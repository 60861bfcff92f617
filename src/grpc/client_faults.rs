//! Requests tonic refuses before any handler sees them, answered as the
//! client's fault, in jobq's words:
//! - a message over `--max-request-bytes` (refused from its length prefix,
//!   before it is read): OUT_OF_RANGE saying what was too big, the limit,
//!   and the flag that sets it;
//! - a message that does not decode, or is framed wrong: tonic answers
//!   INTERNAL, as if the server were at fault; this answers
//!   INVALID_ARGUMENT with tonic's reason.
//!
//! On unary calls by rewriting the answer's status headers (a layer over
//! the router), on streams where the message reaches the session as an
//! error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

/// tonic's words for a message over the decoding limit.
const TONIC_TOO_LARGE: &str = "message length too large";

/// What tonic's refusals of a badly framed message start with (a
/// compressed flag without an encoding, a flag that is neither 0 nor 1).
const BAD_FRAMING: &str = "protocol error: received message with";

/// What prost's decode errors start with.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// jobq's status for a request tonic refused (`limit` is the request size
/// limit), if `status` is such a refusal; `None` for any other status.
pub(crate) fn explain(status: &Status, limit: usize) -> Option<Status> {
    let (code, message) = explained(status.code(), status.message(), limit)?;
    Some(Status::new(code, message))
}

fn explained(code: Code, message: &str, limit: usize) -> Option<(Code, String)> {
    if code == Code::Internal && message.starts_with(UNDECODABLE) {
        return Some((
            Code::InvalidArgument,
            format!(
                "the request is not a valid protobuf message of this method's type ({message}); check that the client uses jobq's proto/ files"
            ),
        ));
    }
    if code == Code::Internal && message.starts_with(BAD_FRAMING) {
        return Some((
            Code::InvalidArgument,
            format!("the request's gRPC framing is wrong ({message})"),
        ));
    }
    if code != Code::OutOfRange || !message.contains(TONIC_TOO_LARGE) {
        return None;
    }
    // "... found 2000017 bytes, the limit is: ..."
    let found = message
        .split("found ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let size = found.map_or_else(
        || "a message".to_string(),
        |n| format!("a {n}-byte message"),
    );
    Some((
        Code::OutOfRange,
        format!(
            "the request is {size}, over the server's limit of {limit} bytes per message; send less per message (fewer jobs per batch, a smaller payload) or raise --max-request-bytes (JOBQ_MAX_REQUEST_BYTES)"
        ),
    ))
}

/// Rewrites tonic's refusals of unary requests (see the module).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientFaultLayer {
    limit: usize,
}

impl ClientFaultLayer {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> tower_layer::Layer<S> for ClientFaultLayer {
    type Service = ClientFaults<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientFaults {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`ClientFaultLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ClientFaults<S> {
    inner: S,
    limit: usize,
}

impl<S, Request, B, E> tower_service::Service<Request> for ClientFaults<S>
where
    S: tower_service::Service<Request, Response = http::Response<B>, Error = E>,
{
    type Response = http::Response<B>;
    type Error = E;
    type Future = Rewritten<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Rewritten {
            inner: self.inner.call(request),
            limit: self.limit,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a [`ClientFaults`] service, rewritten if it is one of
    /// tonic's refusals.
    pub(crate) struct Rewritten<F> {
        #[pin]
        inner: F,
        limit: usize,
    }
}

impl<F, B, E> Future for Rewritten<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let limit = *this.limit;
        this.inner
            .poll(cx)
            .map(|answer| answer.map(|response| rewrite(response, limit)))
    }
}

/// A trailers-only answer (a unary call refused before its handler ran)
/// carries its status in the headers.
fn rewrite<B>(mut response: http::Response<B>, limit: usize) -> http::Response<B> {
    let headers = response.headers();
    let code = match headers.get("grpc-status").map(http::HeaderValue::as_bytes) {
        Some(b"11") => Code::OutOfRange,
        Some(b"13") => Code::Internal,
        _ => return response,
    };
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    if let Some((code, better)) = explained(code, &message, limit) {
        // gRPC percent-encodes the message: '%' and anything outside
        // printable ASCII.
        let encoded = percent_encode(&better);
        if let Ok(value) = http::HeaderValue::from_str(&encoded) {
            let headers = response.headers_mut();
            headers.insert("grpc-message", value);
            headers.insert("grpc-status", http::HeaderValue::from(code as i32));
        }
    }
    response
}

/// gRPC's encoding of `grpc-message`.
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// gRPC percent-encodes `grpc-message`; only the shape matters here, so
/// undecodable bytes are dropped.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_size_the_limit_and_the_flag() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 2000017 bytes, the limit is: 1049600 bytes",
        );
        let better = explain(&tonic, 1_049_600).expect("rewritten");
        assert_eq!(better.code(), Code::OutOfRange);
        assert!(
            better.message().contains("2000017-byte message")
                && better.message().contains("1049600 bytes")
                && better.message().contains("--max-request-bytes"),
            "{}",
            better.message()
        );
        assert!(explain(&Status::out_of_range("lease_duration: too long"), 10).is_none());
        assert!(explain(&Status::invalid_argument(TONIC_TOO_LARGE), 10).is_none());
    }

    #[test]
    fn percent_decoding_keeps_plain_text_and_decodes_escapes() {
        assert_eq!(percent_decode("a%20b%3A c"), "a b: c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode(&percent_encode("50% é\n")), "50% é\n");
    }

    #[test]
    fn an_undecodable_message_is_the_clients_fault() {
        let tonic =
            Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
        let better = explain(&tonic, 10).expect("rewritten");
        assert_eq!(better.code(), Code::InvalidArgument);
        assert!(
            better.message().contains("invalid wire type"),
            "{}",
            better.message()
        );
        assert!(explain(&Status::internal("the journal failed"), 10).is_none());
    }
}
