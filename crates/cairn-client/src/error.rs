//! The client's errors. The one distinction a caller must not lose:
//! [`Error::OutcomeUnknown`] (a write may or may not have been applied)
//! versus every other error of a write (it was not applied, or the server
//! refused it).

/// An error reply from the server that the client does not handle itself
/// (`-WRONGTYPE ...`, `-FENCED ...`, `-LOCKLOST ...`, `-ERR ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    text: String,
}

impl ServerError {
    pub(crate) fn new(bytes: &[u8]) -> ServerError {
        ServerError {
            text: String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// The error code: the first word (`WRONGTYPE`, `FENCED`, `ERR`).
    pub fn code(&self) -> &str {
        self.text.split(' ').next().unwrap_or("")
    }

    /// The whole error line, code included.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the command; nothing was applied by this
    /// attempt (for a write: the state machine rejected it).
    #[error("server error: {0}")]
    Server(ServerError),
    /// A write may or may not have been applied: the connection failed
    /// or timed out after the request left, or the server answered
    /// `-UNKNOWN`. Read the data back to find out, or opt in to retries
    /// with [`Cmd::retry_if_unknown`](crate::Cmd::retry_if_unknown) or
    /// [`Cmd::idempotent`](crate::Cmd::idempotent).
    #[error("outcome unknown (the write may or may not have been applied): {reason}")]
    OutcomeUnknown {
        /// What made it unknown.
        reason: String,
    },
    /// Every attempt failed with an error that proves nothing was applied
    /// (no leader, connection refused, circuit open, ...), until the
    /// retry budget or the request's deadline ran out.
    #[error("unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
    /// Connecting or talking to a node failed before the request was
    /// sent.
    #[error("connection to {addr}: {reason}")]
    Connection {
        /// The node's address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A reply that is not valid RESP, or not what the command returns.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A lock this process held is no longer held (its renewal failed
    /// with `-LOCKLOST`, or could not succeed before the lease ended).
    #[error("lock lost: {0}")]
    LockLost(String),
    /// A configuration the client cannot work with.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// The server's error reply, if this is one.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    /// Whether a fenced write was refused because the lock is no longer
    /// held with its token (`-FENCED`).
    pub fn is_fenced(&self) -> bool {
        self.server().is_some_and(|e| e.code() == "FENCED")
    }

    /// Whether a write may have been applied despite the error.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_expose_their_code() {
        let e = ServerError::new(b"FENCED the lock is not held with this token");
        assert_eq!(e.code(), "FENCED");
        assert!(Error::Server(e).is_fenced());
        assert!(!Error::Protocol("x".into()).is_fenced());
    }
}
