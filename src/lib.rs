//! skiff: one binary that is a whole Kubernetes-compatible edge cluster.
//!
//! Modules, bottom to top (docs/adr/0010-layering.md; `architecture_tests` checks it):
//! - `store` (the revision log) and `model` (the shared Kubernetes model: quantities,
//!   CIDRs, selectors, version, join wire types) name no other skiff module; `host`
//!   (hostname, addresses), `serve` (the TLS serve loop), `pki`, `runtime`, `image`
//!   and `network` name at most `model` and `pki`.
//! - `api` (the Kubernetes HTTP API) sits on store, pki, model, host and serve.
//! - `client` (kube-rs clients) and `component` (Context, supervisor, event recorder)
//!   are what `controllers`, `scheduler` and `agent` (the node) are built on; those
//!   three are API clients and never name `api`, `store` or each other.
//! - `config` (the node's one configuration path), `server` (starts everything,
//!   with its own agent) and `cli` (the edge) are on top.

pub mod agent;
pub mod api;
#[cfg(test)]
mod architecture_tests;
pub mod cli;
pub mod client;
pub mod component;
pub mod config;
pub mod controllers;
pub mod dns;
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
