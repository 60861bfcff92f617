//! gRPC over raw HTTP/2, for what the generated client cannot do: cut a
//! message in half, send bytes that do not decode, count DATA frames.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use super::PATIENCE;

/// A gRPC call on its own HTTP/2 connection.
pub(crate) struct RawCall {
    addr: SocketAddr,
    connection: h2::client::SendRequest<Bytes>,
    pub body: h2::SendStream<Bytes>,
    response: Option<h2::client::ResponseFuture>,
    answers: Option<h2::RecvStream>,
    /// Bytes received and not yet taken as messages.
    received: BytesMut,
    /// DATA frames received so far.
    pub frames: usize,
}

impl RawCall {
    /// Starts a call to `path` (e.g. `/jobq.v1.JobQueue/StreamEnqueue`),
    /// leaving the request body open.
    pub(crate) async fn start(addr: SocketAddr, path: &str) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (h2, connection) = h2::client::handshake(tcp).await.expect("handshake");
        tokio::spawn(connection);
        Self::on(addr, h2, path).await
    }

    /// Another call on this call's connection. The server reads a
    /// connection's frames in order, so once this call is answered the
    /// server has seen the earlier call begin.
    pub(crate) async fn sibling(&self, path: &str) -> Self {
        Self::on(self.addr, self.connection.clone(), path).await
    }

    async fn on(addr: SocketAddr, connection: h2::client::SendRequest<Bytes>, path: &str) -> Self {
        let mut h2 = connection.ready().await.expect("ready");
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, body) = h2.send_request(request, false).expect("send");
        Self {
            addr,
            connection: h2,
            body,
            response: Some(response),
            answers: None,
            received: BytesMut::new(),
            frames: 0,
        }
    }

    /// Whether the server closes this call's connection within
    /// [`PATIENCE`].
    pub(crate) async fn connection_closes(&self) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if self.connection.clone().ready().await.is_err() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends bytes on the request body.
    pub(crate) fn send(&mut self, bytes: Bytes) {
        self.body.send_data(bytes, false).expect("send data");
    }

    /// Reads DATA frames until `count` whole gRPC messages have arrived
    /// since the last call, and returns their bodies.
    pub(crate) async fn messages(&mut self, count: usize) -> Vec<Bytes> {
        if self.answers.is_none() {
            let response = self.response.take().expect("response pending");
            let response = tokio::time::timeout(PATIENCE, response)
                .await
                .expect("response in time")
                .expect("response");
            self.answers = Some(response.into_body());
        }
        let answers = self.answers.as_mut().expect("body");
        let mut out = Vec::new();
        loop {
            while let Some(message) = take_message(&mut self.received) {
                out.push(message);
            }
            if out.len() >= count {
                return out;
            }
            let chunk = tokio::time::timeout(PATIENCE, answers.data())
                .await
                .expect("data in time")
                .expect("more data")
                .expect("data");
            let _ = answers.flow_control().release_capacity(chunk.len());
            self.frames += 1;
            self.received.put(chunk);
        }
    }
}

/// How a call ended, as the server said.
#[derive(Debug)]
pub(crate) enum Ending {
    /// A gRPC status (from trailers, or a trailers-only response).
    Status(tonic::Code, String),
    /// The stream or connection was reset or closed without a status.
    Closed(String),
}

impl RawCall {
    /// Ends the request body.
    pub(crate) fn end(&mut self) {
        let _ = self.body.send_data(Bytes::new(), true);
    }

    /// Ends the request body and reads to the end of the response: its
    /// gRPC status, or how the stream was cut.
    pub(crate) async fn finish(mut self) -> Ending {
        self.end();
        self.ending().await
    }

    /// Reads to the end of the response without ending the request body.
    pub(crate) async fn ending(&mut self) -> Ending {
        let read = async {
            if self.answers.is_none() {
                let response = self.response.take().expect("response pending");
                let response = match response.await {
                    Ok(response) => response,
                    Err(e) => return Ending::Closed(e.to_string()),
                };
                if let Some(ending) = status_of(response.headers()) {
                    return ending;
                }
                self.answers = Some(response.into_body());
            }
            let answers = self.answers.as_mut().expect("body");
            loop {
                match answers.data().await {
                    Some(Ok(chunk)) => {
                        let _ = answers.flow_control().release_capacity(chunk.len());
                    }
                    Some(Err(e)) => return Ending::Closed(e.to_string()),
                    None => break,
                }
            }
            match answers.trailers().await {
                Ok(Some(trailers)) => status_of(&trailers)
                    .unwrap_or_else(|| Ending::Closed("trailers without grpc-status".into())),
                Ok(None) => Ending::Closed("no trailers".into()),
                Err(e) => Ending::Closed(e.to_string()),
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the call ended in time")
    }
}

/// The gRPC status in `headers`, decoded by tonic's own reader
/// (`grpc-status`, and `grpc-message` percent-decoded).
fn status_of(headers: &http::HeaderMap) -> Option<Ending> {
    let status = tonic::Status::from_header_map(headers)?;
    Some(Ending::Status(status.code(), status.message().to_string()))
}

/// A gRPC length-prefixed message.
pub(crate) fn grpc_frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(body.len()).expect("small"));
    frame.put_slice(&body);
    frame.freeze()
}

/// The first whole length-prefixed message in `buffer`, taken out of it.
fn take_message(buffer: &mut BytesMut) -> Option<Bytes> {
    if buffer.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return None;
    }
    let mut frame = buffer.split_to(5 + len);
    Some(frame.split_off(5).freeze())
}
