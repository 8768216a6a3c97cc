//! Connection table of one listener: who holds a slot, and who gives it up when the listener
//! is full.
//!
//! Policy (issue 13): a connection that is not serving a request (still in its TLS
//! handshake, between HTTP/1.1 requests, or HTTP/2 with no open stream) holds its slot only
//! as long as nobody else needs it. When the listener is full, a new connection takes the
//! slot of the connection that has been idle the longest, which is closed; only when every
//! connection is busy with a request is the new one refused, at once (closed, not left in
//! the kernel's accept queue). The request budget keeps the number of busy connections well
//! below the cap, so the API server and the kubelet always get a slot. A per-peer cap keeps
//! one address from taking the whole table; an idle timeout closes what nobody evicted.
//!
//! Pure infrastructure: the table knows addresses and counters, not HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
// tokio's clock, so tests can run with paused time.
use tokio::time::Instant;

/// Limits of one listener. `max_per_peer == 0` means "same as `max`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max: usize,
    pub max_per_peer: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is held by a connection serving a request.
    Full,
    /// This peer holds `max_per_peer` busy connections.
    PeerFull,
}

impl Refused {
    /// Bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Full => "cap",
            Refused::PeerFull => "per_peer",
        }
    }
}

/// One connection's slot.
pub struct Conn {
    id: u64,
    peer: IpAddr,
    /// Requests being served on it now.
    busy: AtomicUsize,
    /// Requests handed to us on it so far.
    served: AtomicU64,
    /// Bytes arrived while no request was being served: a request head has begun and has not
    /// been handed to us yet (see [`Conn::head_overdue`]).
    head_started: AtomicBool,
    /// Milliseconds since the table's epoch when it last started or finished a request.
    last_active: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    epoch: Instant,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Marks one request as started; the guard marks it finished. Only the finish records
    /// the time: idleness is measured from the last request's end, and a busy connection is
    /// never idle.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        // Loaded first so that the common case writes nothing more.
        if self.head_started.load(Ordering::Relaxed) {
            self.head_started.store(false, Ordering::Relaxed);
        }
        Busy(self.clone())
    }

    /// Requests begun on this connection so far.
    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Whether a request head has begun and not been handed over.
    pub fn head_pending(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && self.head_started.load(Ordering::Relaxed)
    }

    /// The bytes that arrived since the last request were not a request head after all (an
    /// HTTP/2 preface, which may come in pieces).
    pub fn not_a_head(&self) {
        self.head_started.store(false, Ordering::Relaxed);
    }

    /// Records that bytes arrived. While no request is being served they are the start of
    /// the next request's head, which then has to be complete within the header timeout.
    /// Called on every read, so it reads the clock never and writes only on a change.
    pub fn bytes_arrived(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && !self.head_started.load(Ordering::Relaxed) {
            self.head_started.store(true, Ordering::Relaxed);
        }
    }

    /// Resolves once a request head has been arriving for at least `timeout` (at most a
    /// quarter more) without a request being handed over: a slowloris. The clock starts at
    /// the head's first byte, so an idle keep-alive connection is left to the idle timeout.
    /// Sampled every quarter of `timeout` instead of timed per request: one timer per
    /// connection, none per request.
    pub async fn head_overdue(&self, timeout: Duration) {
        // `interval` panics on a zero period; validation only rules out a zero timeout.
        let mut tick = tokio::time::interval((timeout / 4).max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // (requests served when the pending head was first seen, ticks seen since)
        let mut seen: Option<(u64, u32)> = None;
        loop {
            tick.tick().await;
            let served = self.served();
            let pending = self.head_pending();
            seen = match seen {
                Some((n, ticks)) if pending && n == served => {
                    if ticks + 1 >= 4 {
                        return;
                    }
                    Some((n, ticks + 1))
                }
                _ if pending => Some((served, 0)),
                _ => None,
            };
        }
    }

    /// Resolves when the table took this connection's slot for a newer one.
    pub async fn evicted(&self) {
        let notified = self.evict.notified();
        if self.evicted.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Resolves once the connection has served nothing for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.busy.load(Ordering::Acquire) > 0 {
                // Busy: a request is bounded by its own timeouts; look again later.
                tokio::time::sleep(timeout).await;
                continue;
            }
            let last = Duration::from_millis(self.last_active.load(Ordering::Acquire));
            let since = self.epoch.elapsed().saturating_sub(last);
            if since >= timeout {
                return;
            }
            tokio::time::sleep(timeout - since).await;
        }
    }
}

/// A request in progress on a connection.
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_active.store(self.0.now_ms(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// The table; see the module docs for the policy.
pub struct ConnTable {
    limits: ConnLimits,
    inner: Mutex<Inner>,
    epoch: Instant,
}

/// What [`ConnTable::admit`] did besides admitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// There was a free slot.
    Free,
    /// An idle connection was closed to make room.
    Evicted,
}

impl ConnTable {
    pub fn new(mut limits: ConnLimits) -> Arc<Self> {
        limits.max = limits.max.max(1);
        if limits.max_per_peer == 0 || limits.max_per_peer > limits.max {
            limits.max_per_peer = limits.max;
        }
        Arc::new(Self {
            limits,
            inner: Mutex::new(Inner::default()),
            epoch: Instant::now(),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Only map updates happen under the lock; a poisoned one is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// A slot for a new connection from `peer`: a free one, or the slot of the longest-idle
    /// connection (of this peer when it is at its own cap), which is told to close.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Slot, Admitted), Refused> {
        let mut inner = self.lock();
        let mut how = Admitted::Free;
        let peer_count = inner.per_peer.get(&peer).copied().unwrap_or(0);
        if peer_count >= self.limits.max_per_peer {
            if !Self::evict_oldest_idle(&mut inner, Some(peer)) {
                return Err(Refused::PeerFull);
            }
            how = Admitted::Evicted;
        } else if inner.conns.len() >= self.limits.max {
            if !Self::evict_oldest_idle(&mut inner, None) {
                return Err(Refused::Full);
            }
            how = Admitted::Evicted;
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            peer,
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            head_started: AtomicBool::new(false),
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_peer.entry(peer).or_default() += 1;
        Ok((
            Slot {
                table: self.clone(),
                conn,
            },
            how,
        ))
    }

    /// Removes the idle connection with the oldest activity (of `peer`, if given) and tells
    /// it to close. O(open connections), paid only when the table is full.
    fn evict_oldest_idle(inner: &mut Inner, peer: Option<IpAddr>) -> bool {
        let victim = inner
            .conns
            .values()
            .filter(|c| peer.is_none_or(|p| c.peer == p))
            .filter(|c| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_active.load(Ordering::Acquire))
            .map(|c| c.id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(c) = inner.conns.remove(&id) {
            Self::forget_peer(inner, c.peer);
            c.evicted.store(true, Ordering::Release);
            c.evict.notify_one();
        }
        true
    }

    fn forget_peer(inner: &mut Inner, peer: IpAddr) {
        if let Some(n) = inner.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_peer.remove(&peer);
            }
        }
    }
}

/// A held slot; dropping it frees the slot (unless it was already taken by eviction).
pub struct Slot {
    table: Arc<ConnTable>,
    conn: Arc<Conn>,
}

impl Slot {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        if inner.conns.remove(&self.conn.id).is_some() {
            ConnTable::forget_peer(&mut inner, self.conn.peer);
        }
    }
}

/// At most one warning per `every`, saying how many were held back in between: a cap that
/// is hit ten thousand times a second must not flood the log.
pub struct WarnEvery {
    every_ms: u64,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last warning, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnEvery {
    pub fn new(every: Duration) -> Self {
        Self {
            every_ms: every.as_millis() as u64,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last warning)` when a warning may be logged now.
    pub fn check(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread is logging this very moment.
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn full_table_evicts_the_longest_idle_and_refuses_when_all_are_busy() {
        let t = ConnTable::new(ConnLimits {
            max: 2,
            max_per_peer: 0,
        });
        let (a, how) = t.admit(ip(1)).unwrap();
        assert_eq!(how, Admitted::Free);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (b, _) = t.admit(ip(2)).unwrap();
        // Both idle: the third takes a's slot (a is older), and a learns it.
        let (c, how) = t.admit(ip(3)).unwrap();
        assert_eq!(how, Admitted::Evicted);
        tokio::time::timeout(Duration::from_secs(1), a.conn().evicted())
            .await
            .expect("a was not told to close");
        assert_eq!(t.open(), 2);
        // Dropping the evicted slot does not free a second slot.
        drop(a);
        assert_eq!(t.open(), 2);
        // b and c busy: a fourth is refused, nobody is evicted.
        let _gb = b.conn().begin();
        let _gc = c.conn().begin();
        assert_eq!(t.admit(ip(4)).err(), Some(Refused::Full));
        drop(_gc);
        let (_d, how) = t.admit(ip(4)).unwrap();
        assert_eq!(how, Admitted::Evicted);
        tokio::time::timeout(Duration::from_secs(1), c.conn().evicted())
            .await
            .expect("c was not told to close");
    }

    #[tokio::test]
    async fn per_peer_cap_evicts_that_peers_idle_connections_only() {
        let t = ConnTable::new(ConnLimits {
            max: 10,
            max_per_peer: 2,
        });
        let (other, _) = t.admit(ip(9)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (a1, _) = t.admit(ip(1)).unwrap();
        let (a2, _) = t.admit(ip(1)).unwrap();
        let _busy = a1.conn().begin();
        let (_a3, how) = t.admit(ip(1)).unwrap();
        assert_eq!(how, Admitted::Evicted);
        tokio::time::timeout(Duration::from_secs(1), a2.conn().evicted())
            .await
            .unwrap();
        let _busy3 = _a3.conn().begin();
        assert_eq!(t.admit(ip(1)).err(), Some(Refused::PeerFull));
        // The older connection of another peer was never touched.
        assert!(!other.conn().evicted.load(Ordering::Acquire));
        assert_eq!(t.open(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_waits_out_busy_periods() {
        let t = ConnTable::new(ConnLimits {
            max: 1,
            max_per_peer: 0,
        });
        let (s, _) = t.admit(ip(1)).unwrap();
        let conn = s.conn().clone();
        let busy = conn.begin();
        let idle = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            conn.idle_for(Duration::from_secs(10)).await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!idle.is_finished(), "closed while a request was running");
        drop(busy);
        let waited = idle.await.unwrap();
        assert!(waited >= Duration::from_secs(30), "{waited:?}");
    }

    /// How long `head_overdue(10 s)` takes to resolve on a connection driven by `drive`
    /// (given the connection and how to advance time), or `None` within 100 s.
    async fn overdue_after<F, Fut>(drive: F) -> Option<Duration>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let t = ConnTable::new(ConnLimits {
            max: 1,
            max_per_peer: 0,
        });
        let (s, _) = t.admit(ip(1)).unwrap();
        let conn = s.conn().clone();
        let started = tokio::time::Instant::now();
        let driver = tokio::spawn(drive(conn.clone()));
        let r = tokio::time::timeout(
            Duration::from_secs(100),
            conn.head_overdue(Duration::from_secs(10)),
        )
        .await
        .ok()
        .map(|()| started.elapsed());
        driver.abort();
        r
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_completes_is_overdue_after_the_timeout_and_nothing_else_is() {
        let sec = Duration::from_secs;
        // Silence is idleness, not a late head.
        assert_eq!(overdue_after(|_| async {}).await, None);
        // Header bytes keep trickling in, no request is ever handed over: overdue between
        // 10 s and 12.5 s after the first byte (sampled every 2.5 s).
        let got = overdue_after(|c| async move {
            tokio::time::sleep(sec(1)).await;
            loop {
                c.bytes_arrived();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await
        .expect("a slowloris head was never overdue");
        assert!(
            got >= sec(11) && got <= sec(13) + Duration::from_millis(500),
            "{got:?}"
        );
        // Keep-alive traffic: every head completes within a second, for 100 s.
        let keep_alive = overdue_after(|c| async move {
            loop {
                c.bytes_arrived();
                tokio::time::sleep(Duration::from_millis(900)).await;
                let busy = c.begin();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(busy);
            }
        })
        .await;
        assert_eq!(keep_alive, None);
        // A slow body arrives while its request is being served: not a head.
        let body = overdue_after(|c| async move {
            let _busy = c.begin();
            loop {
                c.bytes_arrived();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        assert_eq!(body, None);
        // One request served, then the next head stalls: overdue, counted from that head.
        let got = overdue_after(|c| async move {
            c.bytes_arrived();
            drop(c.begin());
            tokio::time::sleep(sec(30)).await;
            c.bytes_arrived();
        })
        .await
        .expect("the stalled second head was never overdue");
        assert!(got >= sec(40) && got <= sec(43), "{got:?}");
    }

    #[test]
    fn warn_every_holds_back_and_counts() {
        let w = WarnEvery::new(Duration::from_secs(3600));
        assert_eq!(w.check(), Some(0));
        assert_eq!(w.check(), None);
        assert_eq!(w.check(), None);
        assert_eq!(w.suppressed.load(Ordering::Acquire), 2);
        let w = WarnEvery::new(Duration::ZERO);
        assert_eq!(w.check(), Some(0));
        assert_eq!(w.check(), Some(0));
    }
}
