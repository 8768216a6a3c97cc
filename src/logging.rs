//! Structured logs (SPEC 8): JSON in clusters, text for people; level from `RUST_LOG`.
//!
//! Lines go through a bounded, lossy, non-blocking writer (`tracing-appender`): a request
//! thread formats its line and hands it to a channel; one worker thread writes whatever has
//! queued up through a 64 KiB buffer, so a burst costs one `write` per batch instead of one
//! per line, and a slow or blocked stderr (a full pipe, a stalled log shipper) never holds up
//! an admission answer. When the queue is full the line is dropped and counted
//! ([`dropped_lines`], exported as `tether_log_lines_dropped_total`).

use std::io::Write;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Lines that may wait for the writer. Each line is bounded (user text is cut, see `text`),
/// so this bounds the queue's memory to a few MB.
pub const QUEUE_LINES: usize = 8192;

/// Bytes collected before a write; the worker also writes whenever the queue runs empty.
const BATCH_BYTES: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log worker alive; dropping it writes out what is queued (bounded wait).
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// A bounded, lossy, non-blocking writer over `sink`, batching writes.
pub fn non_blocking<W: Write + Send + 'static>(
    sink: W,
    queue_lines: usize,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue_lines)
        .thread_name("tether-log")
        .finish(std::io::BufWriter::with_capacity(BATCH_BYTES, sink))
}

/// Log lines dropped because the writer fell behind (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
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
    if DROPPED.get().is_some() {
        return None;
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = non_blocking(std::io::stderr(), QUEUE_LINES);
    let counter = writer.error_counter();
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
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        return None;
    }
    let _ = DROPPED.set(counter);
    Some(LogGuard { _worker: guard })
}

/// Colours only for a person at a terminal who did not ask for none (no-color.org).
pub fn use_color(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

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

    #[test]
    fn a_blocked_sink_never_blocks_the_caller_and_drops_are_counted() {
        let (gate, GateHandle { open, entered, out }) = gate();
        // A batch larger than the buffer goes straight to the sink, so the worker blocks in
        // its first write; everything after that must queue or be dropped, never wait.
        let (writer, guard) = non_blocking(gate, 4);
        let big = vec![b'x'; BATCH_BYTES + 1];
        writer.make_writer().write_all(&big).unwrap();
        entered.recv().unwrap();
        // The worker is stuck in the sink: these 100 writes all return (this test would hang
        // here otherwise) and all but the 4 queued lines are dropped.
        for i in 0..100 {
            let line = format!("line {i}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(writer.error_counter().dropped_lines(), 96);
        // Open the sink: the big line and the 4 queued ones are written, in order.
        open_gate(&open);
        drop(guard);
        let out = out.lock().unwrap();
        let text = String::from_utf8_lossy(&out[BATCH_BYTES + 1..]).into_owned();
        assert_eq!(text, "line 0\nline 1\nline 2\nline 3\n");
    }

    #[test]
    fn queued_lines_are_written_in_one_batch() {
        let (gate, GateHandle { open, entered, out }) = gate();
        let (writer, guard) = non_blocking(gate, 1000);
        writer
            .make_writer()
            .write_all(&vec![b'x'; BATCH_BYTES + 1])
            .unwrap();
        entered.recv().unwrap();
        // 1000 lines queue up behind the blocked write ...
        for i in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("{i:04}\n").as_bytes())
                .unwrap();
        }
        open_gate(&open);
        drop(guard);
        // ... and reach the sink as one write (5000 bytes fit the batch buffer).
        let writes = entered.try_iter().count() + 1;
        assert_eq!(writes, 2, "the big line, then one batch");
        assert_eq!(out.lock().unwrap().len(), BATCH_BYTES + 1 + 5000);
        assert_eq!(writer.error_counter().dropped_lines(), 0);
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
