//! Requests over `--max-request-bytes`: tonic refuses such a message from
//! its length prefix, before reading it, with OUT_OF_RANGE and wording of
//! its own. This says instead what was too big, what the limit is, and
//! which flag sets it: on unary calls by rewriting the answer's
//! `grpc-message` (a layer over the router), on streams where the message
//! reaches the session as an error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

/// tonic's words for a message over the decoding limit.
const TONIC_TOO_LARGE: &str = "message length too large";

/// The status for a message over the limit of `limit` bytes, if `status`
/// is tonic's refusal of one; `None` for any other status.
pub(crate) fn explain(status: &Status, limit: usize) -> Option<Status> {
    explained(status.code(), status.message(), limit).map(Status::out_of_range)
}

fn explained(code: Code, message: &str, limit: usize) -> Option<String> {
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
    Some(format!(
        "the request is {size}, over the server's limit of {limit} bytes per message; send less per message (fewer jobs per batch, a smaller payload) or raise --max-request-bytes (JOBQ_MAX_REQUEST_BYTES)"
    ))
}

/// Rewrites tonic's OUT_OF_RANGE for an oversized unary request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OversizeLayer {
    limit: usize,
}

impl OversizeLayer {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> tower_layer::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`OversizeLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Oversize<S> {
    inner: S,
    limit: usize,
}

impl<S, Request, B, E> tower_service::Service<Request> for Oversize<S>
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
    /// The answer of an [`Oversize`] service, rewritten if it is tonic's
    /// refusal of an oversized request.
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
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11");
    if !out_of_range {
        return response;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    if let Some(better) = explained(Code::OutOfRange, &message, limit) {
        // Plain ASCII without '%': a valid grpc-message as it stands.
        if let Ok(value) = http::HeaderValue::from_str(&better) {
            response.headers_mut().insert("grpc-message", value);
        }
    }
    response
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
    }
}
