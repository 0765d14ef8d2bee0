//! Glint's domain and infrastructure, shared by the API and the workers.
#![recursion_limit = "256"]

#[macro_use]
mod macros;

pub mod cache;
pub mod config;
pub mod context;
pub mod db;
pub mod error;
pub mod fetch;
pub mod heartbeat;
pub mod image;
pub mod keystone;
pub mod list;
pub mod member;
pub mod metadefs;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod quota;
pub mod store;
pub mod task;

pub use error::{Error, Result};
