use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A clock that always says the same, so both formatters' lines can be compared.
#[derive(Clone)]
struct Fixed;

impl FormatTime for Fixed {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str("2026-11-30T12:00:00.000001Z")
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What `tracing-subscriber`'s JSON format and [`JsonLine`] write for the events `emit`
/// sends, each configured as `logging::init` configures it.
fn both(emit: impl Fn()) -> (String, String) {
    let (stock, ours) = (Buf::default(), Buf::default());
    let s = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_timer(Fixed)
        .with_writer(stock.clone())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .finish();
    tracing::subscriber::with_default(s, &emit);
    let s = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(ours.clone())
        .json()
        .event_format(JsonLine::new(Fixed))
        .finish();
    tracing::subscriber::with_default(s, &emit);
    (stock.text(), ours.text())
}

#[derive(Debug)]
struct Oops;

impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk \"full\"\n")
    }
}

impl std::error::Error for Oops {}

/// A value that logs while it is being formatted: the inner line is formatted while the
/// outer one holds the line buffer.
struct Chatty;

impl std::fmt::Debug for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!(inner = "é\n", "logged while formatting");
        f.write_str("chatty")
    }
}

/// A name and the events it sends.
type Case = (&'static str, Box<dyn Fn()>);

#[test]
fn lines_are_byte_for_byte_the_stock_json_format() {
    let cases: Vec<Case> = vec![
        (
            "the decision line's field kinds",
            Box::new(|| {
                tracing::info!(
                    uid = "b1f5e7a2",
                    kind = "AttachedResource",
                    dry_run = false,
                    duration_us = 675u64,
                    "admission decision"
                )
            }),
        ),
        (
            "escapes in strings, keys and the message",
            Box::new(|| {
                tracing::warn!(
                    name = "a\"b\\c\nd\re\tf\u{1}\u{8}\u{c}\u{1f}\u{7f}é😀",
                    "msg \"quoted\"\n{}",
                    "\u{0}"
                )
            }),
        ),
        (
            "numbers",
            Box::new(|| {
                tracing::info!(
                    a = 0u64,
                    b = u64::MAX,
                    c = i64::MIN,
                    d = -3i64,
                    e = 10.141521000000001f64,
                    f = 1e300f64,
                    g = -0.0f64,
                    h = f64::NAN,
                    i = f64::INFINITY,
                    j = 2.0f64,
                    k = true,
                    l = 7u128,
                    "n"
                )
            }),
        ),
        (
            "display and debug values, errors",
            Box::new(|| {
                let err = Oops;
                tracing::error!(
                    peer = %"127.0.0.1",
                    opt = ?Some("x\"y"),
                    error = &err as &(dyn std::error::Error + 'static),
                    "request refused: {}",
                    "why"
                )
            }),
        ),
        (
            "every level, a custom target, no message",
            Box::new(|| {
                tracing::trace!(x = 1, "t");
                tracing::debug!(x = 2, "d");
                tracing::info!(target: "custom::target", x = 3);
                tracing::warn!("w");
                tracing::error!("e");
            }),
        ),
        (
            "a line longer than the kept buffer, then short ones",
            Box::new(|| {
                let long = "é\"x".repeat(9000);
                tracing::info!(big = long.as_str(), "long");
                tracing::info!(after = "short", "short");
                tracing::info!(again = 1u64);
            }),
        ),
        (
            "a value that logs while the line is formatted",
            Box::new(|| {
                tracing::info!(value = ?Chatty, n = 1u64, "outer");
                tracing::info!("after");
            }),
        ),
        (
            "inside a span (the stock formatter writes it)",
            Box::new(|| {
                tracing::info_span!("reconcile", object = "ns/name")
                    .in_scope(|| tracing::info!(step = "apply", "inside"))
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (name, emit) in &cases {
        let (stock, ours) = both(emit);
        if stock.is_empty() || stock != ours {
            failures.push(format!("{name}:\n stock: {stock}\n ours:  {ours}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_line_is_one_json_object() {
    let (_, ours) = both(|| {
        tracing::info!(name = "x\ny", "a\nb");
        tracing::info!("plain");
    });
    let lines: Vec<&str> = ours.lines().collect();
    assert_eq!(lines.len(), 2, "{ours}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["timestamp"], "2026-11-30T12:00:00.000001Z");
        assert!(v["message"].is_string(), "{l}");
    }
}

#[test]
fn the_timestamp_has_the_stock_shape_and_time() {
    // Same shape as tracing-subscriber's `SystemTime` (what log pipelines parse), and the
    // same clock: the stock stamp falls between two of ours taken around it.
    let shape = |t: &str| {
        let b = t.as_bytes();
        b.len() == 27
            && b.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                26 => c == b'Z',
                _ => c.is_ascii_digit(),
            })
    };
    let stamp = |timer: &dyn FormatTime| {
        let mut s = String::new();
        timer.format_time(&mut Writer::new(&mut s)).unwrap();
        s
    };
    let before = stamp(&Rfc3339Micros);
    let stock = stamp(&tracing_subscriber::fmt::time::SystemTime);
    let after = stamp(&Rfc3339Micros);
    for t in [&before, &stock, &after] {
        assert!(shape(t), "{t}");
    }
    // Fixed-width, zero-padded: text order is time order.
    assert!(
        before <= stock && stock <= after,
        "{before} {stock} {after}"
    );
}

#[test]
fn rfc3339_micros_table() {
    // Golden stamps (dates from Python's datetime, an independent calendar); each case runs
    // on the cache the previous one left, as the lines of one thread do.
    let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
    let mut cache = None;
    let cases: &[(&str, SystemTime, &str)] = &[
        (
            "first line formats the second",
            at(1_796_083_291, 123_456_789),
            "2026-12-01T00:01:31.123456Z",
        ),
        (
            "same second, from the cache",
            at(1_796_083_291, 999_999_999),
            "2026-12-01T00:01:31.999999Z",
        ),
        (
            "micros are zero-padded",
            at(1_796_083_291, 7_000),
            "2026-12-01T00:01:31.000007Z",
        ),
        (
            "next second replaces the cache",
            at(1_796_083_292, 0),
            "2026-12-01T00:01:32.000000Z",
        ),
        (
            "year boundary",
            at(1_798_761_599, 999_999_000),
            "2026-12-31T23:59:59.999999Z",
        ),
        (
            "new year",
            at(1_798_761_600, 500_000_000),
            "2027-01-01T00:00:00.500000Z",
        ),
        (
            "back in time is formatted again",
            at(1_796_083_291, 1_000),
            "2026-12-01T00:01:31.000001Z",
        ),
        ("the epoch", at(0, 0), "1970-01-01T00:00:00.000000Z"),
    ];
    for (name, t, want) in cases {
        let got = rfc3339_micros(*t, &mut cache).map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(got.as_deref(), Some(*want), "{name}");
    }
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(rfc3339_micros(before, &mut cache), None, "before 1970");
    // humantime formats up to the last second of 9999 and refuses later times.
    let last = at(253_402_300_799, 0);
    let got = rfc3339_micros(last, &mut cache).map(|b| String::from_utf8(b.to_vec()).unwrap());
    assert_eq!(
        got.as_deref(),
        Some("9999-12-31T23:59:59.000000Z"),
        "year 9999"
    );
    // Past it: `None` (the caller's fallback fails the line), not a panic.
    assert_eq!(
        rfc3339_micros(at(253_402_300_800, 0), &mut cache),
        None,
        "year 10000"
    );
}
