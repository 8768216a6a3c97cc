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

/// Escapes what it is given as the inside of a JSON string, as serde_json does: `"`, `\`
/// and control characters; everything else as is.
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            // One table lookup per byte; most bytes need nothing.
            if !NEEDS_ESCAPE[b as usize] {
                continue;
            }
            self.0.write_str(&s[start..i])?;
            match b {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                0x08 => self.0.write_str("\\b")?,
                0x0c => self.0.write_str("\\f")?,
                _ => write!(self.0, "\\u{b:04x}")?,
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// The bytes serde_json escapes inside a string: control characters, `"` and `\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

#[cfg(test)]
mod tests;
