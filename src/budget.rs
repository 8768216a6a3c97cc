//! Request budgets: how many admission requests may be in flight, and how many bytes their
//! bodies and parsed forms may hold, in all and per peer.
//!
//! Each request takes a [`Ticket`] before its body is read; the ticket grows as body bytes
//! arrive and once more by the estimated cost of parsing them ([`json_cost`]), and gives
//! everything back when dropped. A request that does not fit is answered at once (503, or
//! 429 when one peer holds too much) instead of waiting or buffering: under attack, memory
//! stays bounded by the budget and honest requests from other peers still fit.
//!
//! Pure infrastructure: no admission types here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Limits on requests in flight. `0` in a per-peer limit means "same as the global one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_requests: usize,
    pub max_requests_per_peer: usize,
    pub max_bytes: usize,
    pub max_bytes_per_peer: usize,
}

/// Why a request does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// `--max-requests` requests are in flight.
    Requests,
    /// This peer has `--max-requests-per-peer` in flight.
    PeerRequests,
    /// The bodies and parsed forms in flight would exceed `--max-inflight-bytes`.
    Bytes,
    /// This peer's would exceed its share of it.
    PeerBytes,
}

impl Over {
    /// Bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Over::Requests => "concurrency",
            Over::PeerRequests => "peer_concurrency",
            Over::Bytes => "memory",
            Over::PeerBytes => "peer_memory",
        }
    }

    /// One peer over its share gets 429 (slow down); everyone over the global budget 503.
    pub fn per_peer(self) -> bool {
        matches!(self, Over::PeerRequests | Over::PeerBytes)
    }
}

#[derive(Default)]
struct State {
    requests: usize,
    bytes: usize,
    /// (requests, bytes) per peer; entries leave when both reach zero.
    peers: HashMap<IpAddr, (usize, usize)>,
}

/// The shared budget of one listener.
pub struct Budget {
    limits: RequestLimits,
    state: Mutex<State>,
}

impl Budget {
    pub fn new(mut limits: RequestLimits) -> Arc<Self> {
        if limits.max_requests_per_peer == 0 {
            limits.max_requests_per_peer = limits.max_requests;
        }
        if limits.max_bytes_per_peer == 0 {
            limits.max_bytes_per_peer = limits.max_bytes;
        }
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    pub fn limits(&self) -> RequestLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The critical sections only do arithmetic; a poisoned lock cannot be half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket for one more request from `peer`, or why there is no room.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Over> {
        let mut s = self.lock();
        if s.requests >= self.limits.max_requests {
            return Err(Over::Requests);
        }
        let p = s.peers.entry(peer).or_default();
        if p.0 >= self.limits.max_requests_per_peer {
            return Err(Over::PeerRequests);
        }
        p.0 += 1;
        s.requests += 1;
        Ok(Ticket {
            budget: self.clone(),
            peer,
            bytes: 0,
        })
    }

    /// Requests and bytes in flight now.
    pub fn in_flight(&self) -> (usize, usize) {
        let s = self.lock();
        (s.requests, s.bytes)
    }
}

/// One request's share of the budget; dropping it gives the share back.
pub struct Ticket {
    budget: Arc<Budget>,
    peer: IpAddr,
    bytes: usize,
}

impl Ticket {
    /// Bytes this ticket holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `n` more bytes, or none if they do not fit.
    pub fn grow(&mut self, n: usize) -> Result<(), Over> {
        let limits = self.budget.limits;
        let mut s = self.budget.lock();
        if s.bytes.saturating_add(n) > limits.max_bytes {
            return Err(Over::Bytes);
        }
        let p = s.peers.entry(self.peer).or_default();
        if p.1.saturating_add(n) > limits.max_bytes_per_peer {
            return Err(Over::PeerBytes);
        }
        p.1 += n;
        s.bytes += n;
        drop(s);
        self.bytes += n;
        Ok(())
    }

    /// Ensures the ticket holds at least `total` bytes.
    pub fn reserve_total(&mut self, total: usize) -> Result<(), Over> {
        match total.checked_sub(self.bytes) {
            Some(more) if more > 0 => self.grow(more),
            _ => Ok(()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.requests = s.requests.saturating_sub(1);
        s.bytes = s.bytes.saturating_sub(self.bytes);
        if let Some(p) = s.peers.get_mut(&self.peer) {
            p.0 = p.0.saturating_sub(1);
            p.1 = p.1.saturating_sub(self.bytes);
            if *p == (0, 0) {
                s.peers.remove(&self.peer);
            }
        }
    }
}

/// Estimated heap bytes per JSON value once parsed and worked on: a value is 32 bytes, a
/// `Vec` may hold twice its length while growing (three times during the copy). An object
/// member, counted twice (its `:` and `,`), is a 56-byte slot in such a `Vec` when parsed
/// borrowed (reviews) and a B-tree slot plus its key as a `serde_json::Value`. Measured with
/// `bench/attack` (`[0,0,…]` and `{"k0":0,…}` bodies); see bench/RESULTS.md.
pub const VALUE_COST: usize = 128;

/// Largest number of JSON values one review may hold (see `--max-json-values`). The kinds
/// tether is registered for (AttachedResources, AppDomains, HPAs, PDBs, ScaledObjects,
/// VPAs) hold hundreds; even a 3 MiB review of a big object holds far fewer than this,
/// Kubernetes objects being mostly strings.
pub const DEFAULT_MAX_VALUES: usize = 128 * 1024;

/// What a JSON body will cost to parse, found without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonCost {
    /// Values, counted from the structure (`{`, `[`, `,`, `:` outside strings): an upper
    /// bound of the values within one per container.
    pub values: usize,
    /// Deepest nesting of arrays and objects.
    pub depth: usize,
}

/// One linear pass over `body`, no allocation. Invalid JSON still gets a cost (the parser
/// reports what is wrong with it afterwards); it is only an estimate to budget with.
pub fn json_cost(body: &[u8]) -> JsonCost {
    let mut values = 0usize;
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    let mut saw_scalar = false;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                saw_scalar = true;
                // Strings are most of a review's bytes: jump from quote or backslash to the
                // next (SIMD search) instead of looking at every byte. (Looking at short runs
                // byte by byte first was tried: more instructions under callgrind.)
                i += 1;
                while i < body.len() {
                    match memchr::memchr2(b'"', b'\\', &body[i..]) {
                        None => i = body.len(),
                        Some(k) if body[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k;
                            break;
                        }
                    }
                }
            }
            b'{' | b'[' => {
                values += 1;
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => saw_scalar = true,
        }
        i += 1;
    }
    if values == 0 && saw_scalar {
        values = 1;
    }
    JsonCost {
        values,
        depth: max_depth,
    }
}

/// An upper bound of [`json_cost`]'s `values`: every `{`, `[`, `,` and `:` byte, those inside
/// strings included, at least 1 for a non-empty body. Kubernetes objects keep few of these
/// bytes in strings (a kubectl `last-applied-configuration` annotation is the usual one), so
/// the bound stays close enough to budget with; callers fall back to the exact count only
/// when the bound does not fit. About 1 instruction per byte against `json_cost`'s 8, which
/// has to find where each string ends.
pub fn json_values_bound(body: &[u8]) -> usize {
    // Counted in u8 lanes over chunks of 240 bytes (a multiple of 16, and no lane can
    // overflow), which the compiler turns into vector code; `filter().count()` into a usize
    // was not vectorised and cost 10 instructions per byte.
    let mut n = 0usize;
    for chunk in body.chunks(240) {
        let c = chunk.iter().fold(0u8, |acc, &b| {
            // `[` | 0x20 is `{`: one compare for both openers.
            acc + u8::from((b | 0x20) == b'{' || b == b',' || b == b':')
        });
        n += usize::from(c);
    }
    n.max(usize::from(!body.is_empty()))
}

/// Deepest flow nesting (`[`, `{`) accepted in YAML input. serde_yaml refuses more than 128
/// levels anyway, but only after its parser has spent time quadratic in the depth on them.
pub const MAX_YAML_DEPTH: usize = 128;

/// YAML input nested deeper than the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: flow collections ([ ], {{ }}) nested deeper than {limit} levels; tether refuses such YAML before parsing it")]
pub struct TooDeep {
    pub line: usize,
    pub limit: usize,
}

/// One linear pass over YAML text that finds flow nesting deeper than `limit`, without
/// parsing: quoted scalars and comments are skipped, as are the lines of block scalars
/// (`|`, `>`), whose brackets are text. An estimate that errs on the side of the parser: it
/// never refuses input the parser would accept at depth `limit` or less, except brackets in
/// plain scalars, which YAML allows but Kubernetes manifests do not nest 128 deep.
pub fn yaml_flow_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut block_indent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(bi) = block_indent {
            if line.trim().is_empty() || indent > bi {
                continue;
            }
            block_indent = None;
        }
        if quote.is_none() && (line.starts_with("---") || line.starts_with("...")) {
            depth = 0;
        }
        let mut prev = ' ';
        let mut escaped = false;
        let mut code_end = line.len();
        for (i, c) in line.char_indices() {
            match quote {
                Some('"') => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        quote = None;
                    }
                }
                Some(_) => {
                    if c == '\'' {
                        quote = None;
                    }
                }
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => {
                        code_end = i;
                        break;
                    }
                    '"' | '\''
                        if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':' | '-' | '?') =>
                    {
                        quote = Some(c);
                    }
                    '[' | '{' => {
                        depth += 1;
                        if depth > limit {
                            return Err(TooDeep { line: n + 1, limit });
                        }
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        // A block scalar header (`key: |`, `- >-`, `|2`): its content lines are text.
        if quote.is_none() && depth == 0 {
            let code = line[..code_end].trim_end();
            let header =
                code.trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
            if (header.ends_with('|') || header.ends_with('>'))
                && header[..header.len() - 1]
                    .chars()
                    .last()
                    .is_none_or(|p| p == ' ' || p == ':' || p == '-')
            {
                block_indent = Some(indent);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        max_requests: 3,
        max_requests_per_peer: 2,
        max_bytes: 100,
        max_bytes_per_peer: 70,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn requests_are_limited_globally_and_per_peer_and_given_back() {
        let b = Budget::new(LIMITS);
        let a1 = b.admit(ip(1)).unwrap();
        let a2 = b.admit(ip(1)).unwrap();
        assert_eq!(b.admit(ip(1)).err(), Some(Over::PeerRequests));
        let c1 = b.admit(ip(2)).unwrap();
        assert_eq!(b.admit(ip(3)).err(), Some(Over::Requests));
        drop(a1);
        assert!(b.admit(ip(3)).is_ok());
        drop((a2, c1));
        assert_eq!(b.in_flight(), (0, 0));
        assert!(b.lock().peers.is_empty());
    }

    #[test]
    fn bytes_are_limited_globally_and_per_peer_and_given_back() {
        let b = Budget::new(LIMITS);
        let mut a = b.admit(ip(1)).unwrap();
        a.grow(60).unwrap();
        assert_eq!(a.grow(20), Err(Over::PeerBytes));
        assert_eq!(a.bytes(), 60);
        let mut c = b.admit(ip(2)).unwrap();
        assert_eq!(c.grow(41), Err(Over::Bytes));
        c.reserve_total(40).unwrap();
        c.reserve_total(10).unwrap();
        assert_eq!(c.bytes(), 40);
        assert_eq!(b.in_flight(), (2, 100));
        drop(a);
        assert_eq!(b.in_flight(), (1, 40));
        drop(c);
        assert_eq!(b.in_flight(), (0, 0));
    }

    #[test]
    fn zero_per_peer_means_global() {
        let b = Budget::new(RequestLimits {
            max_requests: 2,
            max_requests_per_peer: 0,
            max_bytes: 10,
            max_bytes_per_peer: 0,
        });
        let _x = b.admit(ip(1)).unwrap();
        let mut y = b.admit(ip(1)).unwrap();
        y.grow(10).unwrap();
    }

    #[test]
    fn yaml_depth_table() {
        let deep = |d: usize| format!("a: {}{}\n", "[".repeat(d), "]".repeat(d));
        let cases: Vec<(String, Option<usize>)> = vec![
            (deep(128), None),
            (deep(129), Some(1)),
            (format!("x: 1\n{}", deep(500)), Some(2)),
            // Quoted, commented and block-scalar brackets are text.
            (format!("a: \"{}\"\n", "[".repeat(500)), None),
            (format!("a: '{}'\n", "{".repeat(500)), None),
            (format!("a: 1 # {}\n", "[".repeat(500)), None),
            (
                format!("a: |\n  {}\n  more\nb: [1]\n", "[".repeat(500)),
                None,
            ),
            (format!("- >-\n   {}\n", "{".repeat(500)), None),
            // After the block scalar ends, nesting counts again.
            (format!("a: |\n  x\nb: {}", deep(200)), Some(3)),
            // An apostrophe inside a plain scalar does not open a quote.
            (format!("a: it's {}", deep(200)), Some(1)),
            // A new document starts at depth 0.
            (
                format!("a: {}\n---\nb: {}\n", "[".repeat(100), "[".repeat(100)),
                None,
            ),
        ];
        crate::table_test::each(cases, |(text, line)| {
            let got = yaml_flow_depth(&text, 128).err().map(|e| e.line);
            assert_eq!(got, line, "{}", &text[..text.len().min(60)]);
        });
        let e = yaml_flow_depth(&deep(200), 128).unwrap_err().to_string();
        assert_eq!(e, "line 1: flow collections ([ ], { }) nested deeper than 128 levels; tether refuses such YAML before parsing it");
    }

    #[test]
    fn json_values_bound_table() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("0", 1),
            ("\"s\"", 1),
            ("[0,0,0]", 3),
            // Unlike `json_cost`, bytes inside strings count: 1 exact, 5 bound.
            ("[\"[,{:\\\"]\"]", 5),
            ("{\"a\":1,\"b\":[2,3]}", 6),
        ];
        crate::table_test::each(cases, |(json, bound)| {
            assert_eq!(json_values_bound(json.as_bytes()), *bound, "{json}");
        });
    }

    proptest::proptest! {
        #[test]
        fn json_values_bound_is_never_below_the_exact_count(
            body in proptest::collection::vec(proptest::sample::select(
                b"{}[],:\"\\ a0".to_vec()), 0..64)
        ) {
            proptest::prop_assert!(json_values_bound(&body) >= json_cost(&body).values);
        }
    }

    #[test]
    fn json_cost_table() {
        let cases: &[(&str, usize, usize)] = &[
            ("", 0, 0),
            ("0", 1, 0),
            ("\"s\"", 1, 0),
            ("[]", 1, 1),
            ("[0,0,0]", 3, 1),
            ("{\"a\":1,\"b\":[2,3]}", 6, 2),
            // Structure inside strings does not count, escaped quotes do not end them.
            ("[\"[,{:\\\"]\"]", 1, 1),
            ("[[[[]]]]", 4, 4),
            // Unbalanced input still terminates with a cost.
            ("]]]{{", 2, 2),
            // An unterminated string, ending in a backslash or not, swallows the rest.
            ("[\"a\\", 1, 1),
            ("[\"a\\\\\\\", {", 1, 1),
            ("[\"\\\"\\\\\",0]", 2, 1),
        ];
        crate::table_test::each(cases, |(json, values, depth)| {
            assert_eq!(
                json_cost(json.as_bytes()),
                JsonCost {
                    values: *values,
                    depth: *depth
                },
                "{json}"
            );
        });
        // The amplification body: 3 MiB of `[0,0,…]` is 1.5 M values.
        let mut body = b"[0".to_vec();
        body.extend(b",0".repeat(1_500_000));
        body.push(b']');
        assert_eq!(json_cost(&body).values, 1_500_001);
    }

    /// Strings shorter and longer than the byte-by-byte run, with structure and an escaped
    /// quote at every position: none of it counts.
    #[test]
    fn json_cost_skips_strings_of_any_length() {
        let mut failures = Vec::new();
        for len in 0..80 {
            for at in 0..len.max(1) {
                let mut inner = vec![b'x'; len];
                if at < len {
                    inner[at] = b',';
                }
                if at + 2 < len {
                    inner[at + 1] = b'\\';
                    inner[at + 2] = b'"';
                }
                let mut body = b"[\"".to_vec();
                body.extend(&inner);
                body.extend(b"\",{}]");
                let got = json_cost(&body);
                if got
                    != (JsonCost {
                        values: 3,
                        depth: 2,
                    })
                {
                    failures.push(format!("{}: {got:?}", String::from_utf8_lossy(&body)));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
