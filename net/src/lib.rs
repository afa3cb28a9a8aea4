//! # net: the dualplane wire protocol
//!
//! Sans-IO at the core (quinn-proto style): [`session::ServerSession`] and
//! [`session::ClientSession`] are fed bytes and milliseconds and polled for
//! datagrams; [`delta`] is the snapshot codec (acked baselines, priority
//! accumulator, byte budget, quantized-view hashes); [`token`] signs and
//! checks connect tokens; [`proto`] frames the reliable control stream.
//! [`driver`] is the thin quinn/tokio glue for both ends.

mod apply;
pub mod bits;
pub mod client;
pub mod command;
pub mod control;
pub mod delta;
pub mod driver;
pub mod guard;
pub mod hub;
pub mod interest;
pub mod observe;
mod pack;
pub mod predict;
pub mod priority;
pub mod proto;
pub mod quant;
pub mod rate;
pub mod session;
pub mod timeline;
pub mod tls;
pub mod token;
