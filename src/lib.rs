//! rill: a single-threaded HTTP/1.1 file server on a hand-rolled mio loop.
//!
//! Read it in this order:
//!
//! 1. [`server`] — the event loop: `Poll`, the listener, the slab of
//!    connections, and the dispatch of readiness events (client sockets and
//!    backend sockets alike).
//! 2. [`conn`] — one connection and the protocol it speaks now, each its own
//!    state machine: [`conn::http`] (reading a head, discarding an unwanted
//!    body, sending an answer, closing), [`conn::proxy`] (one request relayed
//!    to a backend) and [`conn::tunnel`] (bytes both ways after an upgrade);
//!    [`route`] decides where a request goes, and [`upstream`] holds the
//!    connections to backends.
//! 3. [`respond`] — what a request is answered with, using the sans-IO pieces:
//!    [`http::request`] (parsing heads), [`http::response`] (writing heads),
//!    [`http::conditional`] (ranges, 304s), [`path`] (safe paths),
//!    [`listing`] (directory pages) and [`mime`] (content types); and [`site`],
//!    the file-system side of the served folder. A proxied request uses
//!    [`http::forward`], [`http::relay`] and [`http::reframe`] instead.
//!
//! [`config`] turns the command line into a [`config::Config`].

pub mod archive;
pub mod auth;
pub mod body;
pub mod config;
pub mod conn;
pub mod hasher;
pub mod http;
pub mod listing;
pub mod live;
pub mod mime;
pub mod path;
pub mod respond;
pub mod route;
pub mod server;
pub mod site;
pub mod snapshot;
pub mod stats;
pub mod timer;
pub mod tls;
pub mod upload;
pub mod upstream;
pub mod watch;
