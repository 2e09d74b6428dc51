//! Shared set-up of the NATS tests: a connection to the server `scripts/test.sh` started
//! (`NATS_URL`), a fresh JetStream stream per test, and servers of a test's own (for restarts).
//!
//! Without `NATS_URL`, or with the server down, the tests fail; they never skip.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventsource::nats::async_nats::{self, jetstream};
use eventsource::nats::{SubjectPrefix, stream_config};
use futures_util::StreamExt;

/// The NATS server's URL.
///
/// # Panics
/// If `NATS_URL` is not set.
pub fn nats_url() -> String {
    match std::env::var("NATS_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "NATS_URL is not set: the NATS tests need a nats-server with JetStream. Run \
             `scripts/test.sh` (it starts one and sets NATS_URL), or start `nats-server -js` and \
             export NATS_URL=nats://127.0.0.1:4222"
        ),
    }
}

/// A JetStream context on `url`; panics when the server cannot be reached.
pub async fn connect(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("the NATS tests need a reachable server at {url}: {e}"));
    // Fail rather than hang when the server is not there.
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .unwrap_or_else(|_| panic!("the NATS tests need a reachable server at {url}"))
        .unwrap_or_else(|e| panic!("the NATS tests need a reachable server at {url}: {e}"));
    jetstream::new(client)
}

/// A new stream of its own (random name and prefix) with the given duplicate window.
pub async fn fresh_stream(
    js: &jetstream::Context,
    duplicate_window: Duration,
) -> (String, SubjectPrefix) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("T{id}");
    let prefix = SubjectPrefix::new(format!("t{id}.events")).unwrap();
    js.create_stream(stream_config(&name, &prefix, duplicate_window, 1))
        .await
        .unwrap_or_else(|e| panic!("cannot create the JetStream stream {name}: {e}"));
    (name, prefix)
}

/// How many messages `stream` holds.
pub async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Every message of `stream`, in stream order, read through an ephemeral consumer.
pub async fn all_messages(js: &jetstream::Context, stream: &str) -> Vec<jetstream::Message> {
    let expected = message_count(js, stream).await;
    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::with_capacity(expected as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as u64) < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} messages",
            out.len()
        );
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            out.push(message.unwrap());
        }
    }
    out
}

/// Polls `done` every 50 ms until it returns true; panics after `limit` naming `what`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server of a test's own, on a free port with its own store directory, so that the
/// test can stop and restart it. Killed (and its directory removed) on drop.
pub struct OwnServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl OwnServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> OwnServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("eventsource-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = OwnServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server process (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.join("jetstream"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (set NATS_SERVER_BIN): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
