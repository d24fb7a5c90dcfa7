//! Leader election for Rust members of the same groups `eq_leader` (BEAM)
//! members join: locks_leader's semantics, backed by the quorum.
//!
//! - `wire`: the member messages, one encoder and decoder
//!   (`rebar_fixture/PROTOCOL.md`, "Leader election").
//! - `callbacks`: what a Rust member implements ([`Callbacks`]).
//! - `core`: one member, sans-IO ([`Member`], [`Callbacks`]).
//! - `driver`: [`Election`], the tokio driver of one Rust member.

pub mod callbacks;
pub mod core;
pub mod wire;

#[cfg(test)]
mod tests;

pub use self::core::{Callbacks, Caller, Elected, Info, LeaderReply, Member};
pub use wire::{Msg, Role, Token};

mod driver;
pub use driver::{Election, ElectionError};
