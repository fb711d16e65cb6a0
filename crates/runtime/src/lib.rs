//! What happens in user space while a trace runs: event decoding, aggregation,
//! symbolisation and output.
#![forbid(unsafe_code)]
pub mod events;
pub mod flame;
pub mod format;
pub mod globals;
pub mod govalue;
pub mod interp;
pub mod json;
pub mod pprof;
pub mod regroup;
pub mod stacks;
pub mod stats;
pub mod symbolize;
pub mod table;
