//! One connection to a Qdrant server: the gRPC client, a small runtime to drive it from the
//! caller's thread, the version check, and every call's retries and error classification.

use super::error::{RemoteError, Result, MIN_SERVER_VERSION};
use qdrant_client::{Qdrant, QdrantError};
use std::future::Future;
use std::time::Duration;

/// How often and how patiently a failed call is tried again. Only errors that may pass (the
/// server unreachable or restarting, overloaded, a timeout) are retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// About half a minute of waiting in all: a server restart fits in it.
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `n + 1` (n ≥ 1): doubling from `first_backoff`, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << (n.saturating_sub(1)).min(16);
        (self.first_backoff * factor).min(self.max_backoff)
    }
}

/// How `qdrant-client` begins the message of a connection that could not be made.
const CONNECT_FAILED: &str = "Failed to connect to";

/// tonic's message for a connection lost under a request in flight (its transport error, turned
/// into an `Unknown` status: tonic `transport/error.rs`, the version pinned in Cargo.lock) — a
/// server killed mid-export.
const TRANSPORT_LOST: &str = "transport error";

/// A call's failure, classified once so that every caller words it the same way.
#[derive(Debug)]
pub enum CallError {
    /// Unreachable, restarting, overloaded or timed out: worth another try.
    Transient(String),
    Unauthorized(String),
    /// The collection (or point) is not there.
    NotFound(String),
    Other(String),
}

impl CallError {
    fn classify(e: QdrantError) -> CallError {
        use tonic::Code;
        let status = match &e {
            QdrantError::ResponseError { status } => Some(status),
            QdrantError::ResourceExhaustedError { status, .. } => Some(status),
            _ => None,
        };
        let Some(status) = status else {
            return CallError::Other(e.to_string());
        };
        let detail = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted => CallError::Transient(detail),
            // The client's channel pool reports a failed connection (refused, unreachable, a TLS
            // handshake) as `Internal` with this text and no source error, so the text is all
            // there is to tell it from a server fault (`qdrant-client` channel_pool.rs, the
            // version pinned in Cargo.lock; the server-down tests fail if it changes).
            Code::Internal if status.message().starts_with(CONNECT_FAILED) => {
                CallError::Transient(detail)
            }
            Code::Unknown if status.message() == TRANSPORT_LOST => CallError::Transient(detail),
            Code::Unauthenticated | Code::PermissionDenied => CallError::Unauthorized(detail),
            Code::NotFound => CallError::NotFound(detail),
            _ => CallError::Other(detail),
        }
    }

    /// The user-facing error for a failed `what` on the server at `url`.
    pub fn into_remote(self, url: &str, what: &str) -> RemoteError {
        match self {
            CallError::Transient(detail) => RemoteError::ServerDown {
                url: url.into(),
                detail,
            },
            CallError::Unauthorized(detail) => RemoteError::Unauthorized {
                url: url.into(),
                detail,
            },
            CallError::NotFound(detail) | CallError::Other(detail) => RemoteError::Server {
                url: url.into(),
                what: what.into(),
                detail,
            },
        }
    }
}

/// A connected client. Calls block the calling thread; one thread at a time uses it.
pub struct Server {
    client: Qdrant,
    runtime: tokio::runtime::Runtime,
    url: String,
    retry: RetryPolicy,
    /// Calls tried again after a transient failure, since the connection was made.
    retries: std::cell::Cell<u64>,
}

impl Server {
    /// Connects to `url` (gRPC; TLS when https) and checks that the server answers, accepts the
    /// key and is recent enough for multivectors.
    pub fn connect(url: &str, api_key: Option<&str>, retry: RetryPolicy) -> Result<Server> {
        let url = super::address::check_url(url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Server {
                url: url.clone(),
                what: "the client's start".into(),
                detail: e.to_string(),
            })?;
        // Inside the runtime: the channel's connector registers with it.
        let client = runtime
            .block_on(async {
                Qdrant::from_url(&url)
                    .api_key(api_key.map(str::to_string))
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(120))
                    // The version is checked below, with an error that says what to do.
                    .skip_compatibility_check()
                    .build()
            })
            .map_err(|e| RemoteError::BadAddress(format!("{url} ({e})")))?;
        let server = Server {
            client,
            runtime,
            url,
            retry,
            retries: Default::default(),
        };
        let version = server
            .call(
                "the health check",
                |c| async move { c.health_check().await },
            )?
            .version;
        if !supports_multivectors(&version) {
            return Err(RemoteError::NoMultivectors {
                url: server.url.clone(),
                version,
            });
        }
        // The health check is open to anyone; listing collections needs the key when the
        // server has one, so a wrong key is reported here rather than halfway through.
        server.call("listing collections", |c| async move {
            c.list_collections().await
        })?;
        Ok(server)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls tried again after a transient failure so far.
    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    /// Runs one call, retrying transient failures with backoff; any failure is worded with the
    /// server's URL and `what` was being done.
    pub fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        self.call_classified(f)
            .map_err(|e| e.into_remote(&self.url, what))
    }

    /// As `call`, with the failure left classified for callers that word some cases themselves
    /// (a collection that is not there).
    pub fn call_classified<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            match self.runtime.block_on(f(self.client.clone())) {
                Ok(v) => return Ok(v),
                Err(e) => match CallError::classify(e) {
                    CallError::Transient(detail) if tried < self.retry.attempts => {
                        tracing::warn!(
                            "Qdrant at {}: {detail}; trying again ({tried}/{})",
                            self.url,
                            self.retry.attempts
                        );
                        self.retries.set(self.retries.get() + 1);
                        std::thread::sleep(self.retry.backoff(tried));
                    }
                    other => return Err(other),
                },
            }
        }
    }
}

/// Whether a server's version string (`1.18.3`) has multivectors. An unreadable version is
/// given the benefit of the doubt: the collection's creation would then say what is missing.
pub fn supports_multivectors(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(a), Some(b)) => (a, b) >= MIN_SERVER_VERSION,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_1_10_have_no_multivectors() {
        assert!(!supports_multivectors("1.9.7"));
        assert!(!supports_multivectors("0.11.0"));
        assert!(supports_multivectors("1.10.0"));
        assert!(supports_multivectors("v1.18.3"));
        assert!(supports_multivectors("2.0.0"));
        assert!(supports_multivectors("dev"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        let waits: Vec<u128> = (1..5).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn a_connection_lost_mid_request_is_the_server_going_away() {
        let status = |code, msg: &str| QdrantError::ResponseError {
            status: tonic::Status::new(code, msg),
        };
        let transient = |e| matches!(CallError::classify(e), CallError::Transient(_));
        assert!(transient(status(tonic::Code::Unknown, TRANSPORT_LOST)));
        assert!(transient(status(tonic::Code::Unavailable, "anything")));
        assert!(!transient(status(tonic::Code::Unknown, "a server fault")));
    }
}
