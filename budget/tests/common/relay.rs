//! A TCP relay in front of a Redis that counts the commands its clients send: round trips
//! as the wire sees them (Redis's INFO counters also count the commands scripts run).

use std::sync::Arc;

/// A relay between the store and Redis that counts the commands the client sends: round
/// trips as the wire sees them (INFO counters also count the commands scripts run).
pub struct CountingRelay {
    pub port: u16,
    commands: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingRelay {
    pub async fn start(upstream: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = commands.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut server_rx, &mut client_tx).await });
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (mut pending, mut chunk) = (Vec::new(), vec![0u8; 16384]);
                    loop {
                        let n = match client_rx.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some(used) = resp_command_len(&pending) {
                            pending.drain(..used);
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        if server_tx.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CountingRelay { port, commands }
    }

    pub fn count(&self) -> usize {
        self.commands.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Length of the first complete RESP command (`*N` then N bulk strings) in `buf`.
fn resp_command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        if buf.get(at) != Some(&tag) {
            return None;
        }
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (args, mut at) = line(buf, 0, b'*')?;
    for _ in 0..args {
        let (len, start) = line(buf, at, b'$')?;
        at = start + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}
