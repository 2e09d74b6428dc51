//! Notifications of committed appends, both halves: the NOTIFY an append sends and the shared
//! LISTEN connection that wakes a store's live readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eventsource_core::Position;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::error::PostgresError;
use crate::sql::NOTIFY;

/// How long a notification waits for more appends to cover: sending one per append cost a
/// single writer about a sixth of its throughput (BENCHMARKS.md); a listener is woken this much
/// later at most.
const NOTIFY_COALESCE: Duration = Duration::from_millis(2);

/// How long the shared listener stays connected with nobody waiting before it closes.
const IDLE_LISTENER: Duration = Duration::from_secs(30);

/// What the shared listener heard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Announced {
    /// The newest position announced on the channel.
    pub(crate) newest: u64,
    /// How many times the listener reconnected after losing its connection. Notifications
    /// sent while it was away are lost, so each reconnect wakes every waiter once to look
    /// at the log again.
    pub(crate) reconnects: u64,
}

/// The notifications of one store (shared by its clones): its channel, the sending side and
/// the shared listener.
#[derive(Debug)]
pub(crate) struct Notifications {
    /// `<schema>_events`.
    channel: String,
    /// The newest committed position this store has appended.
    appended: AtomicU64,
    /// Whether a task is sending (and will look at `appended` again before it stops).
    sending: AtomicBool,
    /// What the shared listener heard: the newest position announced on the channel, and
    /// how often it reconnected.
    announced: watch::Sender<Announced>,
    /// Whether the shared listener is running.
    listening: AtomicBool,
}

impl Notifications {
    pub(crate) fn new(channel: String) -> Arc<Self> {
        Arc::new(Notifications {
            channel,
            appended: AtomicU64::new(0),
            sending: AtomicBool::new(false),
            announced: watch::Sender::new(Announced::default()),
            listening: AtomicBool::new(false),
        })
    }

    /// The channel appends notify.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Wakes listeners after a committed append, without waiting: a task of its own sends the
    /// NOTIFY after [`NOTIFY_COALESCE`], and appends that commit meanwhile (or while a
    /// notification is in flight) are covered by one notification carrying the newest
    /// position: under load, a few hundred notifications a second instead of one per append.
    ///
    /// Outside the append's transaction on purpose: a transaction that NOTIFYs holds a
    /// database-wide lock from before its commit record is flushed until it ends, which
    /// serializes the commits of concurrent appends (no group commit); a transaction that only
    /// notifies writes no WAL and holds it for microseconds. A notification is a wake-up hint
    /// (listeners poll too), so failing to send one does not fail the append, whose events are
    /// committed.
    pub(crate) fn appended(self: &Arc<Self>, pool: &PgPool, last_position: Position) {
        self.appended.fetch_max(last_position.0, Ordering::SeqCst);
        if self.sending.swap(true, Ordering::SeqCst) {
            return;
        }
        let (this, pool) = (Arc::clone(self), pool.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(NOTIFY_COALESCE).await;
                let newest = this.appended.load(Ordering::SeqCst);
                let _ = sqlx::query(NOTIFY)
                    .bind(&this.channel)
                    .bind(newest.to_string())
                    .execute(&pool)
                    .await;
                this.sending.store(false, Ordering::SeqCst);
                // An append that committed meanwhile saw `sending` and left its position to us,
                // unless it started a task of its own after the line above.
                if this.appended.load(Ordering::SeqCst) == newest
                    || this.sending.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    /// A listener of its own, already subscribed to the channel.
    pub(crate) async fn listen(&self, pool: &PgPool) -> Result<PgListener, PostgresError> {
        let context = || format!("listening on channel `{}`", self.channel);
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(|e| PostgresError::database(context(), e))?;
        listener
            .listen(&self.channel)
            .await
            .map_err(|e| PostgresError::database(context(), e))?;
        Ok(listener)
    }

    /// A receiver of the positions announced on the channel, through one LISTEN connection per
    /// store that live readers share: started by the first subscriber, closed when nobody has
    /// waited for a while. A wake-up is a hint; readers also poll.
    pub(crate) fn subscribe(self: &Arc<Self>, pool: &PgPool) -> watch::Receiver<Announced> {
        let receiver = self.announced.subscribe();
        if !self.listening.swap(true, Ordering::SeqCst) {
            tokio::spawn(Arc::clone(self).feed(pool.clone()));
        }
        receiver
    }

    /// Feeds `announced` until nobody has waited for [`IDLE_LISTENER`].
    async fn feed(self: Arc<Self>, pool: PgPool) {
        // Whether the connection was lost since the listener last listened.
        let mut lost = false;
        loop {
            let Ok(mut listener) = self.listen(&pool).await else {
                // The server is unreachable: readers poll meanwhile; try again later.
                lost = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                if self.announced.receiver_count() == 0 {
                    break;
                }
                continue;
            };
            if std::mem::take(&mut lost) {
                self.reconnected();
            }
            loop {
                // `try_recv`, not `recv`: `recv` reconnects without saying so, and the
                // notifications sent meanwhile are lost without anybody looking again.
                match tokio::time::timeout(IDLE_LISTENER, listener.try_recv()).await {
                    Ok(Ok(Some(notice))) => {
                        // The payload is the newest committed position; a notice without one
                        // is left to the readers' polling.
                        if let Ok(position) = notice.payload().parse::<u64>() {
                            self.announced.send_if_modified(|heard| {
                                let newer = position > heard.newest;
                                heard.newest = heard.newest.max(position);
                                newer
                            });
                        }
                    }
                    // The connection was lost and has been re-established (eagerly).
                    Ok(Ok(None)) => self.reconnected(),
                    Ok(Err(_)) => {
                        // Lost, and reconnecting failed: start over.
                        lost = true;
                        break;
                    }
                    Err(_) if self.announced.receiver_count() == 0 => {
                        self.listening.store(false, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        self.listening.store(false, Ordering::SeqCst);
    }

    /// Wakes every waiter once after a reconnect: what was announced meanwhile is lost.
    fn reconnected(&self) {
        self.announced.send_modify(|heard| heard.reconnects += 1);
    }
}
