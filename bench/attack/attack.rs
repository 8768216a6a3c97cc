//! Bounded attack runner for issue 13 (run by bench/attack/run.sh; loopback only, stops by
//! itself). For each scenario it starts `tether serve --standalone` with the chart's default
//! budgets, runs the attack from 127.0.0.1, and while the attack still runs sends valid
//! reviews from 127.0.0.2 (the API server's part) on fresh connections, one at a time. It
//! prints one line per scenario: the honest reviews' latency (p50, max) and statuses, the
//! server's peak RSS (VmHWM from /proc) and its open file descriptors.
//!
//! Usage: attack <path to tether> [scenario ...]   (no scenario: all)

#[path = "../../tests/common/attack.rs"]
mod attack;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attack::*;
use bytes::Bytes;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const HONEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const SCENARIOS: &[&str] = &[
    "idle-h2",
    "silent",
    "h2-bodies",
    "h2-bodies-no-length",
    "h1-bodies",
    "parse-zeros",
    "parse-under-cap",
    "metrics-idle",
];

struct Tether {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(bin: &Path) -> Tether {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let st = Command::new(bin)
        .args(["certs", "--dns", "localhost", "--dns", "127.0.0.1", "--out"])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .expect("tether certs");
    assert!(st.success());
    let ca = std::fs::read(certs.join("ca.crt")).expect("ca.crt");
    let (port, mport) = (free_port(), free_port());
    let child = Command::new(bin)
        .args(["serve", "--standalone", "--dev-certs-dir"])
        .arg(&certs)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .env("RUST_LOG", "error")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tether serve");
    let t = Tether {
        child,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        metrics: format!("127.0.0.1:{mport}").parse().expect("addr"),
        ca,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(t.metrics).is_ok() && probe(t.metrics).0 == 200 {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("tether did not become ready");
}

/// GET /readyz on the metrics port: (status, latency).
fn probe(addr: SocketAddr) -> (u16, Duration) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, t.elapsed());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, t.elapsed())
}

/// `n` valid reviews, one after another, each on a fresh connection from HONEST.
async fn honest(t: &Tether, n: usize) -> (Vec<Duration>, Vec<u16>) {
    let cfg = client_cfg(&t.ca, &[b"http/1.1"]);
    let mut lat = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(12),
            valid_review(HONEST, t.addr, cfg.clone(), &format!("honest-{i}")),
        )
        .await;
        match r {
            Ok(Ok((st, d))) => {
                lat.push(d);
                statuses.push(st);
            }
            _ => {
                lat.push(started.elapsed());
                statuses.push(0);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (lat, statuses)
}

fn report(name: &str, t: &Tether, detail: &str, lat: &mut [Duration], statuses: &[u16]) {
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let max = lat[lat.len() - 1];
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let pid = t.child.id();
    let hwm = proc_kib(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0;
    let rss = proc_kib(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
    println!(
        "| {name} | {detail} | {:.1} | {:.1} | {ok}/{} | {hwm:.1} | {rss:.1} | {} |",
        p50.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        statuses.len(),
        open_fds(pid)
    );
}

async fn run(bin: &Path, name: &str) {
    let t = start(bin);
    let h2 = client_cfg(&t.ca, &[b"h2"]);
    let h1 = client_cfg(&t.ca, &[b"http/1.1"]);
    let mut held = Held::default();
    let mut conns = Vec::new();
    let mut tcp = Vec::new();
    let detail;
    match name {
        "idle-h2" => {
            for _ in 0..1030 {
                if let Some(c) = idle_h2(ATTACKER, t.addr, h2.clone()).await {
                    conns.push(c);
                }
            }
            detail = format!("{} idle HTTP/2 connections held", conns.len());
        }
        "silent" => {
            for _ in 0..1100 {
                if let Some(c) = silent(ATTACKER, t.addr).await {
                    tcp.push(c);
                }
            }
            // Keep connecting at ~100/s while the honest client measures.
            let addr = t.addr;
            let feeder = tokio::spawn(async move {
                let mut more = Vec::new();
                for _ in 0..1000 {
                    if let Some(c) = silent(ATTACKER, addr).await {
                        more.push(c);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                more
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (mut lat, st) = honest(&t, 20).await;
            feeder.abort();
            report(
                name,
                &t,
                "1,100 silent connections, then ~100 more/s",
                &mut lat,
                &st,
            );
            return;
        }
        "h2-bodies" | "h2-bodies-no-length" => {
            let declared = (name == "h2-bodies").then_some(3 << 20);
            let sent = if declared.is_some() {
                (3 << 20) - 1
            } else {
                3 << 20
            };
            unfinished_h2_bodies(
                ATTACKER,
                t.addr,
                h2.clone(),
                8,
                32,
                declared,
                sent,
                &mut held,
            )
            .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            detail = format!(
                "8 HTTP/2 connections × 32 streams, unfinished 3 MiB bodies{}",
                if declared.is_some() {
                    ""
                } else {
                    " (no Content-Length)"
                }
            );
        }
        "h1-bodies" => {
            unfinished_h1_bodies(
                ATTACKER,
                t.addr,
                h1.clone(),
                100,
                3 << 20,
                (3 << 20) - 1,
                &mut held,
            )
            .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            detail = "100 HTTP/1.1 connections, unfinished 3 MiB bodies".into();
        }
        "parse-zeros" | "parse-under-cap" => {
            let (values, conc) = if name == "parse-zeros" {
                (1_500_000, 4)
            } else {
                (120_000, 8)
            };
            let body = Bytes::from(zeros_review("z", values));
            let addr = t.addr;
            let cfg = h1.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let attacker = tokio::spawn(async move {
                let mut rounds = 0;
                let mut last = Vec::new();
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) && rounds < 200 {
                    last = concurrent_posts(ATTACKER, addr, cfg.clone(), body.clone(), conc).await;
                    rounds += 1;
                }
                (rounds, last)
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (mut lat, st) = honest(&t, 20).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (rounds, last) = attacker.await.unwrap_or_default();
            report(
                name,
                &t,
                &format!(
                    "{conc} concurrent reviews of {values} zeros ({} bytes), {rounds} rounds, attacker saw {last:?}",
                    zeros_review("z", values).len()
                ),
                &mut lat,
                &st,
            );
            return;
        }
        "metrics-idle" => {
            for _ in 0..3000 {
                if let Some(c) = silent(ATTACKER, t.metrics).await {
                    tcp.push(c);
                }
            }
            let mut worst = Duration::ZERO;
            let mut ok = 0;
            for _ in 0..20 {
                let (st, d) = probe(t.metrics);
                worst = worst.max(d);
                ok += usize::from(st == 200);
            }
            detail = format!(
                "3,000 idle connections to the metrics port; /readyz probes {ok}/20 ok, slowest {:.1} ms",
                worst.as_secs_f64() * 1000.0
            );
        }
        other => {
            eprintln!("unknown scenario {other}; known: {SCENARIOS:?}");
            return;
        }
    }
    let (mut lat, st) = honest(&t, 20).await;
    report(name, &t, &detail, &mut lat, &st);
    drop((held, conns, tcp));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(bin) = args.next() else {
        eprintln!("usage: attack <path to tether> [scenario ...]; scenarios: {SCENARIOS:?}");
        std::process::exit(2);
    };
    let mut chosen: Vec<String> = args.collect();
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    println!("| scenario | attack (from 127.0.0.1, running during the measurement) | honest review p50 ms | max ms | answered 200 | server peak RSS MiB | RSS after MiB | open fds |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in &chosen {
        tokio::time::timeout(Duration::from_secs(120), run(Path::new(&bin), s))
            .await
            .unwrap_or_else(|_| println!("| {s} | did not finish within 120 s | | | | | | |"));
    }
}
