//! skiff: one binary that is a whole Kubernetes-compatible edge cluster.
//!
//! Modules, bottom to top: `store` (revision log) ← `api` (the HTTP API over it) ←
//! `server` (starts components, readiness); `pki` (certificates, tokens) and `config`
//! beside them; `cli` at the edge. See docs/adr/ for the decisions behind them.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod controllers;
pub mod image;
pub mod network;
pub mod pki;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
