//! (f) The budgets of issue 13, on arbitrary input: the request budget under random
//! admit/grow/release sequences, the JSON cost pre-scan against serde_json, the YAML
//! nesting pre-scan, and the text sanitiser.
#![no_main]

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tether::budget::{json_cost, yaml_flow_depth, Budget, RequestLimits};
use tether::text::{clean, is_unsafe, ELLIPSIS};

#[derive(Arbitrary, Debug)]
enum Op {
    Admit(u8),
    Grow(u8, u32),
    Release(u8),
}

fn budget_ops(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let limits = RequestLimits {
        max_requests: u.int_in_range(1..=8)?,
        max_requests_per_peer: u.int_in_range(0..=8)?,
        max_bytes: u.int_in_range(1..=1 << 20)?,
        max_bytes_per_peer: u.int_in_range(0..=1 << 20)?,
    };
    let b = Budget::new(limits);
    let lim = b.limits();
    let mut tickets = Vec::new();
    for op in u.arbitrary_iter::<Op>()? {
        match op? {
            Op::Admit(p) => {
                if let Ok(t) = b.admit(IpAddr::from([127, 0, 0, p % 4])) {
                    tickets.push(t);
                }
            }
            Op::Grow(i, n) => {
                let at = i as usize % tickets.len().max(1);
                if let Some(t) = tickets.get_mut(at) {
                    let before = t.bytes();
                    match t.grow(n as usize % (1 << 21)) {
                        Ok(()) => assert!(t.bytes() >= before),
                        Err(_) => assert_eq!(t.bytes(), before, "a refused grow took bytes"),
                    }
                }
            }
            Op::Release(i) => {
                if !tickets.is_empty() {
                    tickets.swap_remove(i as usize % tickets.len());
                }
            }
        }
        let (requests, bytes) = b.in_flight();
        assert_eq!(requests, tickets.len());
        assert_eq!(bytes, tickets.iter().map(|t| t.bytes()).sum::<usize>());
        assert!(requests <= lim.max_requests && bytes <= lim.max_bytes);
    }
    drop(tickets);
    assert_eq!(b.in_flight(), (0, 0));
    Ok(())
}

/// Values (every node, object keys included) and depth of a parsed document.
fn walk(v: &serde_json::Value, depth: usize, out: &mut (usize, usize)) {
    out.0 += 1;
    out.1 = out.1.max(depth);
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, depth + 1, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| {
            out.0 += 1; // the key
            walk(x, depth + 1, out)
        }),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = budget_ops(&mut Unstructured::new(rest));
        }
        1 => {
            let cost = json_cost(rest);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
                let mut got = (0, 0);
                walk(&v, 0, &mut got);
                // An upper bound within one (the root) of what the parser builds...
                assert!(got.0 <= cost.values + 1, "{got:?} > {cost:?}");
                // ...and the exact nesting depth of containers.
                let containers = matches!(v, serde_json::Value::Array(_) | serde_json::Value::Object(_));
                let depth = if containers { got.1 + 1 } else { 0 };
                assert!(cost.depth >= got.1 && cost.depth <= depth, "{got:?} {cost:?}");
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let lines = text.lines().count();
            for limit in [0usize, 1, 2, 8, 128] {
                match yaml_flow_depth(&text, limit) {
                    Ok(()) => {
                        // Monotonic: a larger limit never refuses what a smaller one accepted.
                        assert!(yaml_flow_depth(&text, limit + 1).is_ok());
                    }
                    Err(e) => {
                        assert_eq!(e.limit, limit);
                        assert!(e.line >= 1 && e.line <= lines, "{e} of {lines} lines");
                    }
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let max = (rest.first().copied().unwrap_or(0) as usize) % 64;
            let out = clean(&text, max);
            let n = out.chars().count();
            assert!(n <= max.max(1), "{n} > {max}");
            assert!(!out.chars().any(is_unsafe), "{out:?}");
            let replaced: String = text.chars().map(|c| if is_unsafe(c) { ' ' } else { c }).collect();
            match out.strip_suffix(ELLIPSIS) {
                Some(head) if replaced != *out => assert!(replaced.starts_with(head)),
                _ => assert_eq!(replaced, *out),
            }
        }
    }
});
