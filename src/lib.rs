//! tether: a Kubernetes admission webhook and companion controller that lets application teams
//! attach per-workload resources and per-install app domains with a plain `kubectl apply`.
//!
//! Module map, by layer (a module imports only its own layer or below; README "Layout"):
//! leaves `text`, `json_escape`, `borrowed_json`, `canonical_json`, `webhook`, `crd`, `cli` (clap
//! types), `logging`, `shutdown`; infrastructure `metrics`, `budget`, `conns`, `certs`, `tls`, `watched`,
//! `kube_rate`, `server` (never importing the domain); pure domain `naming`, `policy`,
//! `stamp`, `discovery`, `authz`; domain with I/O `admission`, `controller`, `workloads`,
//! `appdomains`; wiring `config`, `wiring`, `app`, `offline`.

pub mod admission;
pub mod app;
pub mod appdomains;
pub mod authz;
pub mod borrowed_json;
pub mod budget;
pub mod canonical_json;
pub mod certs;
pub mod check;
pub mod cli;
pub mod config;
pub mod conns;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod json_escape;
pub mod kube_rate;
pub mod logging;
pub mod metrics;
pub mod naming;
pub mod offline;
pub mod policy;
pub mod server;
pub mod shutdown;
pub mod stamp;
#[cfg(test)]
mod table_test;
pub mod text;
pub mod tls;
pub mod watched;
pub mod webhook;
pub mod wiring;
pub mod workloads;
