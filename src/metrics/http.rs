//! The scrape endpoint: a tiny HTTP/1.1 responder on tokio, one request
//! per connection, at most [`MAX_CONNECTIONS`] connections answered at once
//! (each on a task and a process of its own), so a client that connects and
//! sends nothing, or does not read, cannot hold up a scrape; a connection
//! over the cap is closed at once.
//!
//! Bounded: the request head is read up to [`MAX_HEAD`] bytes within
//! [`READ_TIMEOUT`]; the answer is written within [`WRITE_TIMEOUT`]; the
//! request is never logged. `GET /metrics` (or `/`) answers the scrape,
//! other paths 404, other methods 405, a bad or oversized head 400.

use super::collect;
use super::exposition::{render, CONTENT_TYPE};
use crate::node::Node;
use crate::process::Process;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;

/// The longest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections answered at once (Prometheus and an operator or two).
pub const MAX_CONNECTIONS: usize = 4;

/// Serves the metrics of `node` on `addr` until the node shuts down;
/// returns the address bound (`127.0.0.1:0` picks a free port).
pub async fn serve(node: &Node, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let shutdown = node.inner.shutdown_signal();
    let node = node.clone();
    tokio::spawn(accept_loop(listener, shutdown, move |stream| {
        let mut process = node.spawn_process();
        async move { answer(&mut process, stream).await }
    }));
    tracing::info!(%bound, "metrics endpoint listening");
    Ok(bound)
}

/// Accepts until `shutdown` changes; each connection is answered by
/// `answer` on a task of its own while fewer than [`MAX_CONNECTIONS`] are,
/// else closed at once (`answer` bounds each in time).
async fn accept_loop<F>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    answer: impl Fn(TcpStream) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let task = answer(stream);
                        tokio::spawn(async move {
                            task.await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        tracing::debug!("metrics: too many connections; one closed");
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `GET` (or `HEAD`) of the metrics.
    Scrape {
        head_only: bool,
    },
    NotFound,
    BadMethod,
    BadRequest,
}

/// Reads the head of `request` (its first line is all that matters).
fn parse(head: &[u8]) -> Ask {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Ask::BadRequest;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Ask::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ask::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Ask::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    match method {
        "GET" | "HEAD" if path == "/metrics" || path == "/" => Ask::Scrape {
            head_only: method == "HEAD",
        },
        "GET" | "HEAD" => Ask::NotFound,
        _ => Ask::BadMethod,
    }
}

/// Reads until the blank line ending the head, [`MAX_HEAD`] bytes at most.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            return None;
        }
        let want = chunk.len().min(MAX_HEAD - head.len());
        let n = stream.read(&mut chunk[..want]).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Some(head)
}

async fn answer(process: &mut Process, mut stream: TcpStream) {
    let ask = match timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => parse(&head),
        Ok(None) => Ask::BadRequest,
        Err(_) => return,
    };
    let (status, body) = match ask {
        Ask::Scrape { head_only } => {
            let snapshot = collect::snapshot(process).await;
            match render(&snapshot, process.node().metrics()) {
                Ok(text) if head_only => ("200 OK", (text.len(), String::new())),
                Ok(text) => ("200 OK", (text.len(), text)),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: scrape failed");
                    let text = format!("{e}\n");
                    ("500 Internal Server Error", (text.len(), text))
                }
            }
        }
        Ask::NotFound => ("404 Not Found", short("try /metrics\n")),
        Ask::BadMethod => ("405 Method Not Allowed", short("GET /metrics\n")),
        Ask::BadRequest => ("400 Bad Request", short("bad request\n")),
    };
    let (length, body) = body;
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Ok(Err(e)) = timeout(WRITE_TIMEOUT, write).await {
        tracing::debug!(error = %e, "metrics: answer not written");
    }
}

fn short(text: &str) -> (usize, String) {
    (text.len(), text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Scrape { head_only: false }
        );
        assert_eq!(
            parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ask::Scrape { head_only: true }
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\n\n"),
            Ask::Scrape { head_only: false }
        );
        assert_eq!(parse(b"GET /other HTTP/1.1\r\n\r\n"), Ask::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Ask::BadMethod);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Ask::BadRequest);
        assert_eq!(parse(b"GET /metrics HTTP/1.1 x\r\n\r\n"), Ask::BadRequest);
        assert_eq!(parse(b"GET /metrics SMTP\r\n\r\n"), Ask::BadRequest);
        assert_eq!(parse(b"\xff\xfe\r\n\r\n"), Ask::BadRequest);
        assert_eq!(parse(b""), Ask::BadRequest);
    }

    #[tokio::test]
    async fn the_head_read_is_bounded() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .await
            .unwrap();
        let head = read_head(&mut server).await.unwrap();
        assert!(head.starts_with(b"GET /metrics"));
        // No blank line within MAX_HEAD bytes: refused, having read no more.
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(32 * 1024, b'a');
        client.write_all(&huge).await.unwrap();
        assert_eq!(read_head(&mut server).await, None);
        let mut rest = vec![0; 64 * 1024];
        drop(client);
        let left = server.read(&mut rest).await.unwrap();
        assert!(
            left >= 32 * 1024 - MAX_HEAD - 1024,
            "read at most MAX_HEAD: {left} left"
        );
        // A client that closes early.
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert_eq!(read_head(&mut server).await, None);
    }

    /// Review #9: a client that connects and sends nothing holds one slot,
    /// not the endpoint; past the cap a connection is closed at once.
    #[tokio::test]
    async fn an_idle_connection_does_not_block_a_scrape() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, shutdown) = watch::channel(false);
        // The real head reading and bounds; a fixed body for the scrape.
        tokio::spawn(accept_loop(listener, shutdown, |mut stream| async move {
            if let Ok(Some(_)) = timeout(READ_TIMEOUT, read_head(&mut stream)).await {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nok").await;
            }
        }));
        let scrape = || async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // (Over the cap the server may have closed already.)
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await;
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            got
        };
        let mut idle = Vec::new();
        for n in 1..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
            // Answered well before the idle ones' READ_TIMEOUT (5 s).
            let got = timeout(Duration::from_secs(2), scrape()).await;
            assert!(
                matches!(&got, Ok(body) if body.ends_with(b"ok")),
                "a scrape behind {n} idle connection(s): {got:?}"
            );
        }
        // Every slot taken: the next connection is closed at once (the
        // sleeps let the last scrape's slot go, then the idle one take it).
        tokio::time::sleep(Duration::from_millis(100)).await;
        idle.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = timeout(Duration::from_secs(2), scrape()).await;
        assert!(matches!(&got, Ok(body) if body.is_empty()), "{got:?}");
        drop(idle);
    }
}
