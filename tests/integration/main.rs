//! Integration tests over real HTTP, organised by URL; each runs on SQLite, PostgreSQL and MariaDB.
#![allow(clippy::unwrap_used)]

mod support;

mod authorization;
mod cli;
mod compressed_imports;
mod console;
mod convert_command;
mod errors;
mod glance_download;
mod http_store;
mod identity_headers;
mod image_actions;
mod image_cache;
mod image_data;
mod image_tags;
mod images_create;
mod images_delete;
mod images_list;
mod images_patch;
mod images_show;
mod import_e2e;
mod imports;
mod keystone;
mod location_api;
mod location_changes;
mod locations;
mod logs;
mod members;
mod metadefs;
mod metrics;
mod migrations;
mod nova_snapshot;
mod quotas;
mod rbd_store;
mod s3_store;
mod schemas;
mod server_limits;
mod shutdown;
mod store_chain;
mod stores;
mod sweep_e2e;
mod swift_store;
mod task_claims;
mod tasks;
mod versions;
