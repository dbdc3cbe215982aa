//! The Prometheus remote-write 1.0 wire: the `WriteRequest` protobuf (prometheus/prompb, written
//! out here with prost's derive: five small messages), snappy block compression, and one HTTP/1.1
//! connection per target over plain TCP or rustls.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Type and help of metric families.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetricMetadata {
    /// `MetricType`: 0 unknown, 1 counter, 2 gauge.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `MetricType` numbers.
pub const TYPE_UNKNOWN: i32 = 0;
/// Counter.
pub const TYPE_COUNTER: i32 = 1;
/// Gauge.
pub const TYPE_GAUGE: i32 = 2;

/// The request body: protobuf, snappy block compressed.
///
/// # Errors
/// Snappy's size limit (a body over ~4 GiB; never at the bounded batch sizes).
pub fn encode(request: &WriteRequest) -> Result<Bytes, snap::Error> {
    let raw = prost::Message::encode_to_vec(request);
    Ok(Bytes::from(snap::raw::Encoder::new().compress_vec(&raw)?))
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http` or `https`.
    pub https: bool,
    /// Host as written in the URL (DNS name or address).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// Name checked against the server's certificate.
    pub server_name: String,
    /// TLS client settings (https only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Headers sent with every request (authorization and extra headers).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// Bound of one request, connecting included.
    pub timeout: Duration,
}

/// Why a request did not land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Connecting, TLS or the exchange failed.
    Network(String),
    /// No answer within the timeout.
    Timeout,
    /// The receiver answered with a non-2xx status.
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// The start of the receiver's message.
        message: String,
    },
}

/// One keep-alive connection to a target, opened on demand.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    conn: Option<SendRequest<Full<Bytes>>>,
}

/// Bytes of a receiver's error message kept for the log.
const MESSAGE_BYTES: usize = 1024;

impl Client {
    /// A client that connects at its first request.
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint, conn: None }
    }

    /// POSTs one encoded `WriteRequest`.
    ///
    /// # Errors
    /// See [`SendError`]; the connection is dropped after any failure but a status answer.
    pub async fn send(&mut self, body: Bytes) -> Result<(), SendError> {
        let timeout = self.endpoint.timeout;
        match tokio::time::timeout(timeout, self.exchange(body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                if !matches!(err, SendError::Status { .. }) {
                    self.conn = None;
                }
                Err(err)
            }
            Err(_) => {
                self.conn = None;
                Err(SendError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, body: Bytes) -> Result<(), SendError> {
        let mut conn = match self.conn.take() {
            Some(conn) if !conn.is_closed() => conn,
            _ => self.connect().await?,
        };
        conn.ready().await.map_err(|err| SendError::Network(err.to_string()))?;
        let e = &self.endpoint;
        let authority = if (e.https && e.port == 443) || (!e.https && e.port == 80) {
            e.host.clone()
        } else {
            format!("{}:{}", e.host, e.port)
        };
        let mut request = hyper::Request::post(&e.path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_ENCODING, "snappy")
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(hyper::header::USER_AGENT, concat!("b24watch-collector/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|err| SendError::Network(err.to_string()))?;
        for (name, value) in &e.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = conn.send_request(request).await.map_err(|err| SendError::Network(err.to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::now_ms()));
        let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.conn = Some(conn);
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(MESSAGE_BYTES)]).trim().to_owned();
        Err(SendError::Status { code: status.as_u16(), retry_after, message: text })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let e = &self.endpoint;
        let host = e.host.trim_start_matches('[').trim_end_matches(']');
        let tcp =
            TcpStream::connect((host, e.port)).await.map_err(|err| SendError::Network(format!("connect: {err}")))?;
        let _ = tcp.set_nodelay(true);
        if let Some(tls) = &e.tls {
            let name = rustls::pki_types::ServerName::try_from(e.server_name.clone())
                .map_err(|err| SendError::Network(format!("server name {:?}: {err}", e.server_name)))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|err| SendError::Network(format!("TLS: {err}")))?;
            handshake(stream).await
        } else {
            handshake(tcp).await
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| SendError::Network(format!("HTTP handshake: {err}")))?;
    tokio::spawn(async move {
        // Ends when the connection closes or the client drops it.
        let _ = conn.await;
    });
    Ok(send)
}

/// `Retry-After` as seconds or an HTTP date (RFC 7231), relative to `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp().as_millisecond();
    Some(Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("ts").as_millisecond();
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now), Some(Duration::from_secs(20)));
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_body_is_snappy_framed_protobuf_a_receiver_can_read() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: "b24watch_load1".into() }],
                samples: vec![Sample { value: 0.5, timestamp: 1_700_000_000_000 }],
            }],
            metadata: vec![],
        };
        let body = encode(&request).expect("encode");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block");
        let back: WriteRequest = prost::Message::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(back, request);
    }
}
