//! The JSON log line, built in a per-thread buffer and handed to tracing in one write.
//!
//! Same bytes as `tracing-subscriber`'s JSON format with `flatten_event(true)` and
//! `with_current_span(false)` (`{"timestamp":…,"level":…,<fields>,"target":…}`; the tests
//! compare the two byte for byte), without its per-event serialiser and the `String` it
//! allocates for every `%`/`?` field and for the message: the decision line is written for
//! every admission request. Events inside a span and events bridged from the `log` crate
//! (rustls) take the stock formatter, which knows how to render those.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::json_escape::push_quoted_str;

/// The event formatter for `--log-format json`.
pub struct JsonLine<T> {
    timer: T,
    stock: format::Format<Json, T>,
}

impl<T: FormatTime + Clone> JsonLine<T> {
    pub fn new(timer: T) -> Self {
        let stock = format::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_timer(timer.clone());
        Self { timer, stock }
    }
}

impl<S, N, T> FormatEvent<S, N> for JsonLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if ctx.lookup_current().is_some() || meta.fields().field("log.target").is_some() {
            return self.stock.format_event(ctx, w, event);
        }
        LINE.with(|cell| {
            // A line logged while this one is formatted (a `Debug` value that logs) finds
            // the buffer taken and gets its own.
            let (mut taken, mut own);
            let line: &mut String = match cell.try_borrow_mut() {
                Ok(buf) => {
                    taken = buf;
                    &mut taken
                }
                Err(_) => {
                    own = String::new();
                    &mut own
                }
            };
            line.clear();
            let written = self
                .write_line(line, event)
                .and_then(|()| w.write_str(line));
            if line.capacity() > KEEP_BYTES {
                // One huge line must not pin its buffer for the life of the thread.
                *line = String::new();
            }
            written
        })
    }
}

thread_local! {
    /// The line being formatted: built here with plain appends, then handed to tracing's
    /// writer in one call (each call into that writer is a dynamic one; a decision line
    /// took about eighty).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Capacity the line buffer keeps between lines; a longer line's buffer is freed after it.
const KEEP_BYTES: usize = 16 * 1024;

impl<T: FormatTime> JsonLine<T> {
    /// The whole line, `{` to `\n`, appended to `line`.
    fn write_line(&self, line: &mut String, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        line.push_str("{\"timestamp\":\"");
        self.timer.format_time(&mut Writer::new(&mut *line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        let mut fields = Fields {
            line: &mut *line,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push_str(",\"target\":");
        push_quoted_str(line, meta.target());
        line.push_str("}\n");
        Ok(())
    }
}

/// The line's timestamp: RFC 3339 in UTC with microseconds (`2026-11-30T23:41:31.123456Z`),
/// what `tracing_subscriber::fmt::time::SystemTime` writes. tracing-subscriber formats seven
/// `{:02}`-style arguments per line (2.1 k instructions); this formats the date and time
/// once per second per thread (humantime) and writes only the microseconds per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now();
        let stamp = SECOND.with(|cached| {
            let mut c = cached.get();
            let stamp = rfc3339_micros(now, &mut c);
            cached.set(c);
            stamp
        });
        match stamp {
            // Only ASCII digits and separators are written into it.
            Some(b) => w.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?),
            // Before 1970 or after 9999: the general formatter, which fails the line past
            // 9999 (as the stock format does) and does not panic.
            None => write!(w, "{}", humantime::format_rfc3339_micros(now)),
        }
    }
}

thread_local! {
    /// The last second formatted on this thread, as `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
}

/// `now` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, the date and time taken from `cached` when it holds
/// the same second and formatted (and cached) otherwise. `None` before 1970 and after 9999.
fn rfc3339_micros(now: SystemTime, cached: &mut Option<(u64, [u8; 19])>) -> Option<[u8; 27]> {
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let prefix = match *cached {
        Some((s, p)) if s == secs => p,
        _ => {
            let whole = UNIX_EPOCH + Duration::from_secs(secs);
            // `YYYY-MM-DDTHH:MM:SSZ`; the date and time are its first 19 bytes. `write!`, not
            // `to_string`: humantime refuses years past 9999 with an error, which `to_string`
            // would turn into a panic.
            let mut text = String::with_capacity(20);
            write!(text, "{}", humantime::format_rfc3339_seconds(whole)).ok()?;
            let p: [u8; 19] = text.as_bytes().get(..19)?.try_into().ok()?;
            *cached = Some((secs, p));
            p
        }
    };
    let mut out = [0u8; 27];
    out[..19].copy_from_slice(&prefix);
    out[19] = b'.';
    let mut micros = since.subsec_micros();
    for d in out[20..26].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out[26] = b'Z';
    Some(out)
}

/// Appends each field as `,"name":value`; the first error stops the line.
struct Fields<'a> {
    line: &'a mut String,
    result: fmt::Result,
}

impl Fields<'_> {
    /// `,"name":` for `field`.
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_quoted_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_quoted_str(self.line, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        // The same digits as `u64`'s `Display`, without the padding-aware formatter.
        self.line.push_str(itoa::Buffer::new().format(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // serde_json's rendering (shortest round-trip; not finite is null).
        match serde_json::Number::from_f64(value) {
            Some(n) => {
                let _ = write!(self.line, "{n}");
            }
            None => self.line.push_str("null"),
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.key(field);
        self.line.push('"');
        // A `Debug` impl may fail; the line is then not written (as the stock format does).
        self.result = write!(Escaped(&mut *self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Escapes what it is given as the inside of a JSON string, as serde_json does
/// ([`crate::json_escape`]); `write!` through it escapes formatted text as it is written.
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::json_escape::write_escaped(&mut *self.0, s)
    }
}

#[cfg(test)]
mod tests;
