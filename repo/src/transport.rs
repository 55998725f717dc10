//! Reading repository files over `file://`, `http://` and `https://` (DESIGN.md §8).
//!
//! One blocking [`Transport`] serves both schemes, so refresh and fetch never care where a
//! repository lives. HTTPS goes through rustls and trusts the system's certificate store
//! (the platform verifier, which honours `SSL_CERT_FILE`). Every read is bounded: a caller
//! names the most bytes it will accept, and a body longer than that is an error, not a
//! bigger buffer. A server that stops sending for [`Transport::idle`] is a timeout.
//! Redirects are not followed: every URI was checked to stay inside its repository, and a
//! redirect would take the request somewhere that check never saw.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::Duration;

/// Why a transfer failed. [`TransportError::is_transient`] tells which ones are worth a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// 404, or no such local file.
    #[error("not found")]
    NotFound,
    /// Another HTTP status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// No byte arrived in time.
    #[error("timed out: no data for {0:?}")]
    Timeout(Duration),
    /// More bytes than the caller allows.
    #[error("the body is longer than the {limit} bytes expected")]
    TooLong {
        /// The most accepted.
        limit: u64,
    },
    /// A scheme other than file, http and https.
    #[error("unsupported URI scheme (use file://, http:// or https://)")]
    Scheme,
    /// The connection or a read failed.
    #[error("{0}")]
    Network(String),
    /// Writing what arrived failed (a full disk, say).
    #[error("writing the download failed: {0}")]
    Write(#[source] io::Error),
}

impl TransportError {
    /// Whether trying again may help: a timeout, a dropped connection or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Timeout(_) | TransportError::Network(_) => true,
            TransportError::Status(code) => *code >= 500 || *code == 429 || *code == 408,
            _ => false,
        }
    }
}

/// Where a download's bytes go. `restart` is called when a server ignores a Range request
/// and sends the whole body again, so the sink must forget what it had.
pub trait Sink {
    /// Takes the next bytes.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Forgets everything written so far.
    fn restart(&mut self) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

/// A client for every scheme; cheap to share between threads.
#[derive(Clone)]
pub struct Transport {
    agent: ureq::Agent,
    /// How long a transfer may go without a byte.
    pub idle: Duration,
}

/// The idle timeout when none is given: `MOSSFS_NET_TIMEOUT` seconds, or 30.
pub fn default_idle() -> Duration {
    idle_from(std::env::var("MOSSFS_NET_TIMEOUT").ok().as_deref())
}

/// [`default_idle`] for the variable's text: 30 s unless it is a positive number of
/// seconds that a `Duration` can hold.
fn idle_from(text: Option<&str>) -> Duration {
    text.and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(30))
}

impl Transport {
    /// A transport whose connects and reads time out after `idle`.
    pub fn new(idle: Duration) -> Transport {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            // A redirect could lead off the repository's host; a mirror must serve in place.
            .max_redirects(0)
            .timeout_connect(Some(idle))
            .timeout_recv_response(Some(idle))
            .timeout_per_read(Some(idle))
            .user_agent(concat!("mossfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Transport { agent, idle }
    }

    /// Reads a whole resource of at most `limit` bytes into memory.
    pub fn get(&self, uri: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
        let mut out = Vec::new();
        self.download(uri, 0, limit, &mut out)?;
        Ok(out)
    }

    /// Streams `uri` from byte `offset` into `sink`, accepting at most `limit` bytes in all
    /// (the `offset` bytes the caller already has included). Returns the total length the
    /// caller then holds.
    pub fn download(
        &self,
        uri: &str,
        offset: u64,
        limit: u64,
        sink: &mut dyn Sink,
    ) -> Result<u64, TransportError> {
        if let Some(path) = uri.strip_prefix("file://") {
            let mut file = File::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => TransportError::NotFound,
                _ => TransportError::Network(e.to_string()),
            })?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| TransportError::Network(e.to_string()))?;
            return copy(&mut file, offset, limit, sink, self.idle);
        }
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(TransportError::Scheme);
        }
        let mut request = self.agent.get(uri);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| self.map_ureq(e))?;
        let status = response.status().as_u16();
        let mut have = offset;
        match status {
            206 if offset > 0 => {}
            200 => {
                if offset > 0 {
                    sink.restart().map_err(TransportError::Write)?;
                    have = 0;
                }
            }
            // The caller already holds every byte there is.
            416 if offset > 0 => return Ok(offset),
            404 | 410 => return Err(TransportError::NotFound),
            other => return Err(TransportError::Status(other)),
        }
        let mut reader = response.into_body().into_reader();
        copy(&mut reader, have, limit, sink, self.idle)
    }

    /// Reads at most `len` bytes of `uri` from byte `start` (fewer where the resource ends),
    /// with an HTTP Range request. A server that ignores Range and answers with the whole
    /// body is read only as far as needed, and the connection is then dropped rather than
    /// drained: the head of a stone costs its head, whatever the server does.
    pub fn get_range(&self, uri: &str, start: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        let mut out = Vec::new();
        if len == 0 {
            return Ok(out);
        }
        if let Some(path) = uri.strip_prefix("file://") {
            let mut file = File::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => TransportError::NotFound,
                _ => TransportError::Network(e.to_string()),
            })?;
            file.seek(SeekFrom::Start(start))
                .map_err(|e| TransportError::Network(e.to_string()))?;
            read_at_most(&mut file, len, &mut out, self.idle)?;
            return Ok(out);
        }
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(TransportError::Scheme);
        }
        let last = start.saturating_add(len - 1);
        let response = self
            .agent
            .get(uri)
            .header("Range", format!("bytes={start}-{last}"))
            .call()
            .map_err(|e| self.map_ureq(e))?;
        let skip = match response.status().as_u16() {
            206 => 0,
            // Range ignored: the whole body, from its first byte.
            200 => start,
            // Nothing at or after `start`.
            416 => return Ok(out),
            404 | 410 => return Err(TransportError::NotFound),
            other => return Err(TransportError::Status(other)),
        };
        let mut reader = response.into_body().into_reader();
        if skip > 0 {
            let mut sink = io::sink();
            let skipped = io::copy(&mut (&mut reader).take(skip), &mut sink)
                .map_err(|e| io_error(e, self.idle))?;
            if skipped < skip {
                return Ok(out);
            }
        }
        read_at_most(&mut reader, len, &mut out, self.idle)?;
        // Dropping the reader unfinished closes the connection instead of reading the rest.
        Ok(out)
    }

    fn map_ureq(&self, error: ureq::Error) -> TransportError {
        match error {
            ureq::Error::Timeout(_) => TransportError::Timeout(self.idle),
            ureq::Error::StatusCode(404) => TransportError::NotFound,
            ureq::Error::StatusCode(code) => TransportError::Status(code),
            ureq::Error::Io(e) => io_error(e, self.idle),
            other => TransportError::Network(other.to_string()),
        }
    }
}

fn io_error(e: io::Error, idle: Duration) -> TransportError {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return TransportError::Timeout(idle);
    }
    // ureq wraps its own errors (a timeout among them) in io::Error when reading a body.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>())
        && matches!(inner, ureq::Error::Timeout(_))
    {
        return TransportError::Timeout(idle);
    }
    TransportError::Network(e.to_string())
}

fn copy(
    reader: &mut dyn Read,
    mut have: u64,
    limit: u64,
    sink: &mut dyn Sink,
    idle: Duration,
) -> Result<u64, TransportError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(have),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e, idle)),
        };
        have = have.saturating_add(n as u64);
        if have > limit {
            return Err(TransportError::TooLong { limit });
        }
        sink.write(&buf[..n]).map_err(TransportError::Write)?;
    }
}

/// Appends at most `len` bytes of `reader` to `out`, stopping early at its end.
fn read_at_most(
    reader: &mut dyn Read,
    len: u64,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), TransportError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e, idle)),
        };
        out.extend_from_slice(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_timeout_falls_back_instead_of_panicking() {
        let default = Duration::from_secs(30);
        for text in ["inf", "1e30", "NaN", "-1", "0", "soon", ""] {
            assert_eq!(idle_from(Some(text)), default, "{text}");
        }
        assert_eq!(idle_from(None), default);
        assert_eq!(idle_from(Some("2.5")), Duration::from_millis(2500));
    }
}
