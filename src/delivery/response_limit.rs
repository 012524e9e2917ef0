//! A bound on what one response may send us, below the HTTP parser's own.
//!
//! actix-http's client buffers an incomplete response head up to 128 KiB and then gives up
//! with an `ERROR` log line of its own, one per attempt, which breaks the promise that an
//! unreachable or misbehaving endpoint costs one warning and never an `ERROR`. So every
//! connection the sender opens reads through [`LimitedIo`]: once [`RESPONSE_LIMIT`] bytes
//! have arrived since our last write (our request), the next read fails with an I/O error
//! saying so. The parser never holds more than that, the attempt fails like any transport
//! error (retried, logged as the outage's one warning, then at debug level), and no crate
//! logs an `ERROR`.
//!
//! 64 KiB is far above anything the endpoint needs to send: a response head of a few hundred
//! bytes and at most the 4 KiB of error body the sender reads. Under TLS the bound counts
//! ciphertext, handshake included (a server's certificate chain is a few KiB).
//!
//! [`Limited`] wraps any TCP connector service, so a connector that adds something else (a
//! proxy tunnel, say) can be wrapped the same way.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_rt::net::ActixStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, Resolver};
use awc::http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, Ready};

/// The most bytes read from a connection between two of our writes.
pub(crate) const RESPONSE_LIMIT: usize = 64 * 1024;

/// awc's default TCP connector, its connections read through [`LimitedIo`].
pub(crate) fn limited_tcp() -> Limited<actix_tls::connect::ConnectorService> {
    Limited(Connector::new(Resolver::default()).service())
}

/// A TCP connector service whose connections read through [`LimitedIo`].
#[derive(Clone)]
pub(crate) struct Limited<S>(pub(crate) S);

impl<S, Io> Service<ConnectInfo<Uri>> for Limited<S>
where
    S: Service<ConnectInfo<Uri>, Response = Connection<Uri, Io>, Error = ConnectError>,
    S::Future: 'static,
    Io: 'static,
{
    type Response = Connection<Uri, LimitedIo<Io>>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>>>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let connecting = self.0.call(req);
        Box::pin(async move {
            let (io, uri) = connecting.await?.into_parts();
            Ok(Connection::new(uri, LimitedIo::new(io)))
        })
    }
}

/// A stream that fails a read once [`RESPONSE_LIMIT`] bytes came in since the last write.
pub(crate) struct LimitedIo<Io> {
    io: Io,
    read_since_write: usize,
}

impl<Io> LimitedIo<Io> {
    fn new(io: Io) -> Self {
        Self {
            io,
            read_since_write: 0,
        }
    }
}

impl<Io> fmt::Debug for LimitedIo<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedIo")
            .field("read_since_write", &self.read_since_write)
            .finish_non_exhaustive()
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for LimitedIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = RESPONSE_LIMIT.saturating_sub(self.read_since_write);
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(format!(
                "the endpoint sent a response larger than {} KiB; it was cut off unread",
                RESPONSE_LIMIT / 1024
            ))));
        }
        // Never more than is left, so the parser's buffer stays within the bound too. The
        // bytes are zeroed first so that no unsafe code is needed to hand them back.
        let n = left.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(n));
        let poll = Pin::new(&mut self.io).poll_read(cx, &mut limited);
        let filled = limited.filled().len();
        if let Poll::Ready(Ok(())) = poll {
            buf.advance(filled);
            self.read_since_write += filled;
        }
        poll
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for LimitedIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                // A new request (or handshake step): its answer gets the whole bound.
                self.read_since_write = 0;
            }
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<Io: ActixStream> ActixStream for LimitedIo<Io> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.io.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.io.poll_write_ready(cx)
    }
}
