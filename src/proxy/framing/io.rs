//! The connection as hyper reads it: incoming bytes are shown to a `Scanner` on the way.
//! May not touch: the bytes themselves (read only), writes (passed through).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Framing, Scanner};

pin_project! {
    /// A connection whose incoming bytes are shown to a `Scanner` before hyper reads them.
    pub struct ScannedIo<T> {
        #[pin]
        inner: T,
        scanner: Scanner,
    }
}

// === impl ScannedIo ===

impl<T> ScannedIo<T> {
    pub fn new(inner: T, framing: Arc<Framing>) -> ScannedIo<T> {
        ScannedIo {
            inner,
            scanner: Scanner::new(framing),
        }
    }
}

impl<T: AsyncRead> AsyncRead for ScannedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.inner.poll_read(cx, buf))?;
        if !this.scanner.is_off() {
            this.scanner
                .feed(buf.filled().get(before..).unwrap_or_default());
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for ScannedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
