//! skiff: one binary that is a whole Kubernetes-compatible edge cluster.
//!
//! Modules, bottom to top: `store` (the revision log) ← `api` (the Kubernetes HTTP API
//! over it) ← `controllers` and `scheduler` (reconcile loops, API clients through
//! `client`) and `agent` (the node: join, pods, kubelet API), which runs containers
//! through `runtime`, images through `image` and pod networking through `network`.
//! `pki` (certificates, tokens) and `config` sit beside them; `server` starts the
//! server's components (with its own agent) and `cli` is the edge. Decisions behind
//! them are in docs/adr/.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod component;
pub mod config;
pub mod controllers;
pub mod host;
pub mod image;
pub mod model;
pub mod network;
pub mod pki;
pub mod runtime;
pub mod scheduler;
pub mod serve;
pub mod server;
pub mod store;
