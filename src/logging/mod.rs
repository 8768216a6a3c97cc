//! Structured logs (SPEC 8): JSON in clusters, text for people; level from `RUST_LOG`.
//!
//! Lines go through a bounded, lossy, non-blocking writer ([`non_blocking`]): a request
//! thread formats its line and appends it to a shared buffer under a short lock; one writer
//! thread writes whatever has gathered in one `write`, at most every [`FLUSH_EVERY`] (sooner
//! when [`BATCH_BYTES`] have gathered). So a busy webhook pays no system call and no thread
//! wake-up per line, and a slow or blocked stderr (a full pipe, a stalled log shipper)
//! never holds up an admission answer: once [`QUEUE_BYTES`] are waiting, new lines are
//! dropped and counted ([`dropped_lines`], exported as `tether_log_lines_dropped_total`).
//!
//! While lines keep coming, the writer wakes by itself once per [`FLUSH_EVERY`]; a request
//! thread wakes it only when a batch fills up or when the writer had parked after a quiet
//! round. Waking it for the first line of every batch as well, as before, preempted the
//! request thread on its CPU twice per batch; under load the writer now takes half as many
//! context switches (bench/RESULTS.md, issue 14, round eleven).
//!
//! Why not `tracing-appender`'s non-blocking writer: its worker wakes for every line when
//! the queue runs empty, which under steady load is always, so each request paid a futex
//! wake, two context switches and a `write` (bench/RESULTS.md, issue 14).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

mod json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Bytes that may wait for the writer; a line that would go past this is dropped. Each line
/// is bounded (user text is cut, see `text`), so this is a few thousand lines.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Gathered bytes that wake the writer before [`FLUSH_EVERY`]: at 80 000 decision lines a
/// second (about 30 MB/s) a batch lasts about 2 ms. (256 KiB would wake it a quarter as
/// often, for no CPU measurable per request, and cost 2 MB of idle RSS: mimalloc commits
/// a whole region for an allocation that large.)
pub const BATCH_BYTES: usize = 64 * 1024;

/// The longest a line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// How long dropping the guard waits for the last lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How the writer batches; [`Batching::default`] is what `serve` uses.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub queue_bytes: usize,
    pub batch_bytes: usize,
    pub flush_every: Duration,
    pub close_wait: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            queue_bytes: QUEUE_BYTES,
            batch_bytes: BATCH_BYTES,
            flush_every: FLUSH_EVERY,
            close_wait: CLOSE_WAIT,
        }
    }
}

/// What the request threads and the writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
    /// Times a request thread woke the writer (tests read it).
    wakes: AtomicU64,
    limits: Batching,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
    /// The writer sleeps until a line wakes it: its last round found nothing to write.
    parked: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves the buffer whole (appends are one
        // `extend_from_slice`), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer handed to the subscriber (cheap to clone). Every `write` is one whole line:
/// `tracing-subscriber` formats an event into a buffer and writes it with one `write_all`.
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

impl LineWriter {
    /// Lines dropped by this writer because the queue was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, line: &[u8]) {
        let s = &*self.shared;
        let mut p = s.lock();
        if p.buf.len() + line.len() > s.limits.queue_bytes {
            drop(p);
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = p.buf.len();
        p.buf.extend_from_slice(line);
        let after = p.buf.len();
        // Wake a parked writer (once: the flag is cleared here) and one whose batch this line
        // fills; a writer between rounds wakes by itself.
        let wake = std::mem::take(&mut p.parked)
            || (before < s.limits.batch_bytes && after >= s.limits.batch_bytes);
        drop(p);
        if wake {
            s.wakes.fetch_add(1, Ordering::Relaxed);
            s.wake.notify_one();
        }
    }
}

impl Write for &LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = &'a LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Keeps the writer thread alive; dropping it writes out what is queued (waiting at most
/// [`Batching::close_wait`], so a stalled stderr cannot hold up exit).
pub struct LogGuard {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let _ = self.done.recv_timeout(self.shared.limits.close_wait);
    }
}

/// A bounded, lossy, non-blocking writer over `sink`, batching writes (see module docs).
pub fn non_blocking<W: Write + Send + 'static>(
    sink: W,
    limits: Batching,
) -> (LineWriter, LogGuard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        wakes: AtomicU64::new(0),
        limits,
    });
    let (done_tx, done) = std::sync::mpsc::channel();
    let worker = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("tether-log".into())
        .spawn(move || {
            write_batches(&worker, sink);
            let _ = done_tx.send(());
        });
    if spawned.is_err() {
        // No thread, no writer: lines queue up to the cap and are then dropped and counted,
        // which is what a stalled stderr looks like too. Dropping the guard does not wait.
        shared.lock().closed = true;
    }
    (
        LineWriter {
            shared: shared.clone(),
        },
        LogGuard { shared, done },
    )
}

/// The writer thread: let a batch gather for at most `flush_every` (or until it is full),
/// write it in one go, and go again; park when a whole round brought nothing, until a line
/// arrives. After close, write what is left and stop.
fn write_batches<W: Write>(s: &Shared, mut sink: W) {
    let mut batch = Vec::with_capacity(s.limits.batch_bytes);
    // Whether the last round had lines: then the next round starts at once, unwoken.
    let mut busy = false;
    loop {
        let closed = {
            let mut p = s.lock();
            if !busy {
                while p.buf.is_empty() && !p.closed {
                    p.parked = true;
                    p = s.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                p.parked = false;
            }
            let deadline = Instant::now() + s.limits.flush_every;
            while !p.closed && p.buf.len() < s.limits.batch_bytes {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                p = s
                    .wake
                    .wait_timeout(p, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            busy = !p.buf.is_empty();
            std::mem::swap(&mut p.buf, &mut batch);
            p.closed && p.buf.is_empty()
        };
        if !batch.is_empty() {
            // Nowhere to report a failed write to stderr; the line is lost either way.
            let _ = sink.write_all(&batch);
            let _ = sink.flush();
            batch.clear();
            // A stalled sink may have let the batch grow to the queue cap: give that back.
            batch.shrink_to(s.limits.batch_bytes);
        }
        if closed {
            return;
        }
    }
}

static INSTALLED: OnceLock<LineWriter> = OnceLock::new();

/// Log lines dropped because the writer fell behind (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, LineWriter::dropped_lines)
}

/// `tether_log_lines_dropped_total`, read from the writer when scraped.
pub fn dropped_lines_collector() -> Box<dyn prometheus::core::Collector> {
    let counter = prometheus::IntCounter::new(
        "tether_log_lines_dropped_total",
        "Log lines dropped because stderr could not keep up (the log queue was full).",
    )
    .expect("static metric definition");
    Box::new(DroppedLines(counter))
}

struct DroppedLines(prometheus::IntCounter);

impl prometheus::core::Collector for DroppedLines {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (now, shown) = (dropped_lines(), self.0.get());
        if now > shown {
            self.0.inc_by(now - shown);
        }
        self.0.collect()
    }
}

/// Installs the global subscriber. A second call (tests) installs nothing and returns `None`.
/// Keep the guard for the life of the process so queued lines are written at exit.
/// `RUST_LOG`, when set, wins over `level` (`--log-level`).
pub fn init(format: LogFormat, level: &str) -> Option<LogGuard> {
    if INSTALLED.get().is_some() {
        return None;
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = non_blocking(std::io::stderr(), Batching::default());
    let installed_writer = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_color(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        ))
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .event_format(json::JsonLine::new(json::Rfc3339Micros))
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        return None;
    }
    let _ = INSTALLED.set(installed_writer);
    Some(guard)
}

/// Colours only for a person at a terminal who did not ask for none (no-color.org).
pub fn use_color(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that blocks every write until the test opens it, like a full pipe.
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        entered: mpsc::Sender<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The test's side of a [`Gate`]: the switch, one message per write that begins, and
    /// what got through.
    struct GateHandle {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        entered: mpsc::Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    fn gate() -> (Gate, GateHandle) {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let gate = Gate {
            open: open.clone(),
            entered: entered_tx,
            out: out.clone(),
        };
        (gate, GateHandle { open, entered, out })
    }

    fn open_gate(open: &(Mutex<bool>, std::sync::Condvar)) {
        let (lock, cv) = open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Batching with a writer that only writes when a batch fills or at close.
    fn limits(queue_bytes: usize, batch_bytes: usize) -> Batching {
        Batching {
            queue_bytes,
            batch_bytes,
            flush_every: Duration::from_secs(3600),
            close_wait: Duration::from_secs(10),
        }
    }

    fn line(w: &LineWriter, text: &str) {
        w.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_blocked_sink_never_blocks_the_caller_and_drops_are_counted() {
        let (gate, GateHandle { open, entered, out }) = gate();
        // A line of a whole batch wakes the writer at once, which then blocks in the sink;
        // everything after must queue (28 bytes: four 7-byte lines) or be dropped, never wait.
        let (writer, guard) = non_blocking(gate, limits(28, 16));
        line(&writer, "0123456789abcdef\n");
        entered.recv().unwrap();
        // The writer is stuck in the sink: these 100 writes all return (this test would hang
        // here otherwise) and all but the 4 queued lines are dropped.
        for i in 0..100 {
            line(&writer, &format!("line {i}\n"));
        }
        assert_eq!(writer.dropped_lines(), 96);
        // Open the sink: the first line and the 4 queued ones are written, in order.
        open_gate(&open);
        drop(guard);
        let out = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "0123456789abcdef\nline 0\nline 1\nline 2\nline 3\n");
    }

    #[test]
    fn queued_lines_are_written_in_one_batch() {
        let (gate, GateHandle { open, entered, out }) = gate();
        let (writer, guard) = non_blocking(gate, limits(1 << 20, 16));
        line(&writer, "0123456789abcdef\n");
        entered.recv().unwrap();
        // 1000 lines queue up behind the blocked write ...
        for i in 0..1000 {
            line(&writer, &format!("{i:04}\n"));
        }
        open_gate(&open);
        drop(guard);
        // ... and reach the sink as one write.
        let writes = entered.try_iter().count() + 1;
        assert_eq!(writes, 2, "the first line, then one batch");
        assert_eq!(out.lock().unwrap().len(), 17 + 5000);
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn lines_below_a_batch_are_not_written_one_by_one() {
        // The sink is open: what it sees is what the writer chose to write.
        let (gate, GateHandle { open, entered, out }) = gate();
        open_gate(&open);
        let (writer, guard) = non_blocking(gate, limits(1 << 20, 1 << 16));
        for i in 0..10 {
            line(&writer, &format!("line {i}\n"));
        }
        drop(guard);
        assert_eq!(entered.try_iter().count(), 1, "ten lines, one write");
        assert_eq!(out.lock().unwrap().len(), 70);
    }

    #[test]
    fn a_lone_line_is_written_after_the_flush_interval() {
        let (gate, GateHandle { open, entered, out }) = gate();
        open_gate(&open);
        let mut l = limits(1 << 20, 1 << 16);
        l.flush_every = Duration::from_millis(20);
        let (writer, guard) = non_blocking(gate, l);
        line(&writer, "alone\n");
        // No more lines and no close: only the interval can write it.
        entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the line is written without waiting for more");
        // Closing waits for that write to finish (and has nothing left to write).
        drop(guard);
        assert_eq!(entered.try_iter().count(), 0);
        assert_eq!(out.lock().unwrap().as_slice(), b"alone\n");
    }

    #[test]
    fn a_writer_with_work_is_not_woken_per_batch() {
        let (gate, GateHandle { open, entered, out }) = gate();
        let mut l = limits(1 << 20, 1 << 16);
        l.flush_every = Duration::from_millis(10);
        let (writer, guard) = non_blocking(gate, l);
        let shared = writer.shared.clone();
        let parked = || shared.lock().parked;
        let wakes = || shared.wakes.load(Ordering::Relaxed);
        // Wait for the writer to park on the empty queue (a spawned thread gets there at
        // once; the loop only bridges its start-up).
        while !parked() {
            std::thread::yield_now();
        }
        // The first line wakes the parked writer, which writes it and blocks in the sink.
        line(&writer, "a\n");
        entered.recv().unwrap();
        assert_eq!(wakes(), 1);
        // A line while it writes wakes nobody: the writer had work, so it starts its next
        // round by itself and writes the line at the end of it.
        line(&writer, "b\n");
        assert_eq!(wakes(), 1, "a busy writer was woken");
        open_gate(&open);
        entered.recv().unwrap();
        // A round with nothing to write parks it again; the next line wakes it.
        while !parked() {
            std::thread::yield_now();
        }
        line(&writer, "c\n");
        entered.recv().unwrap();
        assert_eq!(wakes(), 2);
        drop(guard);
        assert_eq!(out.lock().unwrap().as_slice(), b"a\nb\nc\n");
    }

    #[test]
    fn closing_waits_for_a_stalled_sink_only_so_long() {
        let (gate, GateHandle { entered, .. }) = gate();
        let mut l = limits(1 << 20, 16);
        l.close_wait = Duration::from_millis(50);
        let (writer, guard) = non_blocking(gate, l);
        line(&writer, "0123456789abcdef\n");
        entered.recv().unwrap();
        // The sink never opens: dropping the guard still returns (the test would hang
        // otherwise), and later lines are still accepted without blocking.
        drop(guard);
        line(&writer, "after\n");
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn dropped_lines_are_exported() {
        // Before `init` nothing was dropped; the family exists with a zero.
        let text = crate::metrics::Metrics::new().render();
        assert!(
            text.lines()
                .any(|l| l == "tether_log_lines_dropped_total 0"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod color_tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        for (terminal, no_color, want) in [
            (true, false, true),
            (true, true, false),
            (false, false, false),
            (false, true, false),
        ] {
            assert_eq!(super::use_color(terminal, no_color), want);
        }
    }
}
