//! The JSON log line, written straight into the line buffer.
//!
//! Same bytes as `tracing-subscriber`'s JSON format with `flatten_event(true)` and
//! `with_current_span(false)` (`{"timestamp":…,"level":…,<fields>,"target":…}`; the tests
//! compare the two byte for byte), without its per-event serialiser and the `String` it
//! allocates for every `%`/`?` field and for the message: the decision line is written for
//! every admission request. Events inside a span and events bridged from the `log` crate
//! (rustls) take the stock formatter, which knows how to render those.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

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
        w.write_str("{\"timestamp\":\"")?;
        self.timer.format_time(&mut w)?;
        w.write_str("\",\"level\":\"")?;
        w.write_str(meta.level().as_str())?;
        w.write_char('"')?;
        let mut fields = Fields {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_str(",\"target\":")?;
        write_str_value(&mut w, meta.target())?;
        w.write_str("}\n")
    }
}

/// The line's timestamp: RFC 3339 in UTC with microseconds (`2026-11-30T23:41:31.123456Z`),
/// what `tracing_subscriber::fmt::time::SystemTime` writes, but formatted by humantime into
/// one buffer and written once, where tracing-subscriber formats seven `{:02}`-style
/// arguments (2.1 k instructions per line).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )
    }
}

/// Writes each field as `,"name":value`; the first error stops the line.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            // Few, fused writes: each one is a dynamic call into the line buffer.
            self.result = (|| {
                self.w.write_str(",\"")?;
                Escaped(&mut *self.w).write_str(field.name())?;
                self.w.write_str("\":")?;
                value(self.w)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| write_str_value(w, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's rendering (shortest round-trip; not finite is null).
        self.entry(field, |w| match serde_json::Number::from_f64(value) {
            Some(n) => write!(w, "{n}"),
            None => w.write_str("null"),
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

fn write_str_value(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_str("\"")?;
    Escaped(&mut *w).write_str(s)?;
    w.write_str("\"")
}

/// Escapes what it is given as the inside of a JSON string, as serde_json does
/// ([`crate::json_escape`]); `write!` through it escapes formatted text as it is written.
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::json_escape::write_escaped(&mut self.0, s)
    }
}

#[cfg(test)]
mod tests;
