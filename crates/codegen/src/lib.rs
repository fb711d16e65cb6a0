//! Lowers what a user asked for (a script, or a ready tool such as `funccount`) to eBPF
//! programs against one Go binary: probe placement, register use, built-ins, location
//! expressions, goroutine and stack-walk code.
#![forbid(unsafe_code)]

pub mod funccount;
