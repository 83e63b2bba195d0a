//! The per-key rate limit (`MCP_RATE_LIMIT_PER_MINUTE` calls per fixed one-minute window),
//! decided in memory and counted in the store off the request path.
//!
//! Each process (each container on Lambda) keeps, per key, the window's count the store
//! last returned and the calls it admitted since that the store has not counted yet. A call
//! is admitted while the two together stay under the limit and the uncounted calls stay
//! under the process's **share**: a tenth of the limit ([`SHARE_DIVISOR`], rounded down).
//! A task adds the uncounted calls to the store's counter every [`SYNC_INTERVAL`] (one
//! atomic increment per key that was called, which also returns the window's total across
//! processes). Only a call that finds its process's share used up waits for that increment
//! on its path; with a share of 0 (limits under 10 a minute) every call does, and the limit
//! is exact.
//!
//! Tolerance: a process admits a call only while what it knows of the store's count plus
//! its own uncounted calls is under the limit, and it never has more than its share
//! uncounted; so across P processes sharing a key a window admits at most
//! `limit + (P − 1) × share` calls (66 for a limit of 60 on two processes), and never fewer
//! than the limit: a refusal means the calls counted and uncounted here already reach it.
//! Uncounted calls are added to the store when the endpoint shuts down (`selfbuild serve`);
//! on Lambda a frozen container adds them when it next runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use selfbuild_core::error::StoreError;
use selfbuild_core::ports::{AccessLog, Clock};
use selfbuild_core::text::Escaped;
use time::OffsetDateTime;
use tracing::warn;

/// A process may admit a tenth of a key's limit before the store has counted those calls.
pub const SHARE_DIVISOR: u32 = 10;

/// How often uncounted calls are added to the store.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// The window, in seconds.
const WINDOW_SECONDS: i64 = 60;

/// A refused call: the count it would have made and when the window ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The window's calls including this one.
    pub count: u64,
    /// Seconds until the window ends (at least 1).
    pub retry_after: i64,
}

/// The limiter of one endpoint (one process); clones share it.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn AccessLog>,
    clock: Arc<dyn Clock>,
    limit: u64,
    share: u64,
    keys: Mutex<HashMap<String, Arc<KeyCounts>>>,
    syncing: AtomicBool,
}

/// One key's counts in this process.
struct KeyCounts {
    counts: Mutex<Counts>,
    /// One increment of the store's counter at a time per key.
    sync: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// The window's start, unix seconds.
    window: i64,
    /// The window's count the store last returned (every process's counted calls).
    counted: u64,
    /// Calls admitted here that the store has not counted yet.
    uncounted: u64,
}

impl RateLimiter {
    /// A limiter of `limit_per_minute` calls per key (0: none) counting in `store`.
    pub fn new(store: Arc<dyn AccessLog>, clock: Arc<dyn Clock>, limit_per_minute: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                limit: u64::from(limit_per_minute),
                share: u64::from(limit_per_minute / SHARE_DIVISOR),
                keys: Mutex::new(HashMap::new()),
                syncing: AtomicBool::new(false),
            }),
        }
    }

    /// The calls of one key this process may admit before the store counts them.
    pub fn share(&self) -> u64 {
        self.inner.share
    }

    /// Admits or refuses one call of `key_id` at `now`; an error when the store had to be
    /// asked and failed.
    pub async fn admit(
        &self,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Result<(), Refused>, StoreError> {
        let inner = &self.inner;
        if inner.limit == 0 {
            return Ok(Ok(()));
        }
        let window = window_of(now);
        let retry_after = (window + WINDOW_SECONDS - now.unix_timestamp()).max(1);
        if inner.share == 0 {
            // Exact: the store counts the call before it is answered.
            let count = inner
                .store
                .count_calls(key_id, at(window), 1, expiry(window))
                .await?;
            return Ok(if count > inner.limit {
                Err(Refused { count, retry_after })
            } else {
                Ok(())
            });
        }
        self.start_syncing();
        let key = inner.key(key_id);
        loop {
            {
                let mut counts = lock(&key.counts);
                if counts.window < window {
                    *counts = Counts {
                        window,
                        ..Counts::default()
                    };
                }
                let seen = counts.counted + counts.uncounted;
                if seen >= inner.limit {
                    return Ok(Err(Refused {
                        count: seen + 1,
                        retry_after,
                    }));
                }
                if counts.uncounted < inner.share {
                    counts.uncounted += 1;
                    return Ok(Ok(()));
                }
            }
            // This process's share is used up: the store counts it before this call goes on.
            inner.sync(key_id, &key).await?;
        }
    }

    /// Adds every uncounted call to the store (on shutdown); the first error, if any.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.sync_all().await
    }

    /// The task that adds uncounted calls every [`SYNC_INTERVAL`]; it ends with the limiter.
    fn start_syncing(&self) {
        if self.inner.syncing.swap(true, Ordering::Relaxed) {
            return;
        }
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if let Err(e) = inner.sync_all().await {
                    warn!(error = %Escaped(&e), "rate limit counts not added to the store; trying again");
                }
            }
        });
    }
}

impl Inner {
    fn key(&self, key_id: &str) -> Arc<KeyCounts> {
        let mut keys = lock(&self.keys);
        if let Some(key) = keys.get(key_id) {
            return Arc::clone(key);
        }
        let key = Arc::new(KeyCounts {
            counts: Mutex::new(Counts::default()),
            sync: tokio::sync::Mutex::new(()),
        });
        keys.insert(key_id.to_owned(), Arc::clone(&key));
        key
    }

    /// Adds one key's uncounted calls to the store and takes the window's total from it.
    async fn sync(&self, key_id: &str, key: &KeyCounts) -> Result<(), StoreError> {
        let _turn = key.sync.lock().await;
        let Counts {
            window, uncounted, ..
        } = *lock(&key.counts);
        if uncounted == 0 {
            return Ok(());
        }
        let total = self
            .store
            .count_calls(key_id, at(window), uncounted, expiry(window))
            .await?;
        let mut counts = lock(&key.counts);
        if counts.window == window {
            counts.uncounted -= uncounted;
            counts.counted = counts.counted.max(total);
        }
        Ok(())
    }

    /// Syncs every key with uncounted calls and forgets keys of windows that ended.
    async fn sync_all(&self) -> Result<(), StoreError> {
        let current = window_of(self.clock.now());
        let keys: Vec<(String, Arc<KeyCounts>)> = {
            let mut keys = lock(&self.keys);
            keys.retain(|_, key| {
                let counts = lock(&key.counts);
                counts.window >= current || counts.uncounted > 0
            });
            keys.iter()
                .filter(|(_, key)| lock(&key.counts).uncounted > 0)
                .map(|(id, key)| (id.clone(), Arc::clone(key)))
                .collect()
        };
        let mut first_error = None;
        for (id, key) in keys {
            if let Err(e) = self.sync(&id, &key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The start of the window holding `now`, unix seconds.
fn window_of(now: OffsetDateTime) -> i64 {
    let second = now.unix_timestamp();
    second - second.rem_euclid(WINDOW_SECONDS)
}

fn at(window: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(window).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// When a window's counter may be deleted: five minutes after it ends.
fn expiry(window: i64) -> OffsetDateTime {
    at(window + WINDOW_SECONDS + 5 * 60)
}
