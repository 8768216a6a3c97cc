//! tether: a Kubernetes admission webhook and companion controller that lets application teams
//! attach per-workload resources and per-install app domains with a plain `kubectl apply`.
//!
//! Module map: `admission` (review in, review out), `policy` (rules, pure), `naming` (hashed
//! names, domains), `authz` (access reviews and their cache), `discovery` (kind → resource),
//! `controller` (reconcilers), `tls` (serving certificates), `certs` (generation), `server`
//! (listeners), `conns` and `budget` (connection and request budgets), `text` (making
//! user-supplied text safe to show), `metrics`, `config`, `cli`.

pub mod admission;
pub mod app;
pub mod appdomains;
pub mod authz;
pub mod budget;
pub mod canonical_json;
pub mod certs;
pub mod cli;
pub mod config;
pub mod conns;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod logging;
pub mod metrics;
pub mod naming;
pub mod offline;
pub mod policy;
pub mod server;
pub mod shutdown;
pub mod stamp;
pub mod text;
pub mod tls;
pub mod watched;
pub mod workloads;
