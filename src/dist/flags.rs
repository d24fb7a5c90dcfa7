//! Distribution capability flags, as raw bits.
//!
//! We keep our own constants instead of `erl_dist::DistributionFlags`
//! because that crate defines `MANDATORY_25_DIGEST` as bit 36 (which newer
//! OTP releases use for `DFLAG_LOCAL_EXT`); OTP's `dist.hrl` says bit 26.

/// The node is published: it appears in `nodes()` and takes part in global groups (unset for hidden nodes).
pub const PUBLISHED: u64 = 0x01;
/// Legacy atom cache (obsolete; superseded by `DIST_HDR_ATOM_CACHE`).
pub const ATOM_CACHE: u64 = 0x02;
/// Extended references (`NEW_REFERENCE_EXT`, more than one id word); mandatory since OTP R14.
pub const EXTENDED_REFERENCES: u64 = 0x04;
/// Process monitors across the connection (`MONITOR_P`, `DEMONITOR_P`, `MONITOR_P_EXIT`).
pub const DIST_MONITOR: u64 = 0x08;
/// Funs may be sent (`FUN_EXT`, obsolete form); mandatory.
pub const FUN_TAGS: u64 = 0x10;
/// Monitors by registered name (`erlang:monitor(process, {Name, Node})`).
pub const DIST_MONITOR_NAME: u64 = 0x20;
/// Hidden nodes use the atom cache (obsolete).
pub const HIDDEN_ATOM_CACHE: u64 = 0x40;
/// New fun encoding (`NEW_FUN_EXT`); mandatory.
pub const NEW_FUN_TAGS: u64 = 0x80;
/// Extended pids and ports (wider id fields); mandatory.
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
/// External funs `fun M:F/A` (`EXPORT_EXT`); mandatory.
pub const EXPORT_PTR_TAG: u64 = 0x200;
/// Bitstrings whose length is not a whole number of bytes (`BIT_BINARY_EXT`); mandatory.
pub const BIT_BINARIES: u64 = 0x400;
/// IEEE floats (`NEW_FLOAT_EXT`) instead of the textual `FLOAT_EXT`; mandatory.
pub const NEW_FLOATS: u64 = 0x800;
/// Unicode-aware I/O (`io` protocol over the connection).
pub const UNICODE_IO: u64 = 0x1000;
/// Messages carry the distribution header with atom cache references.
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
/// Short atoms may be encoded as `SMALL_ATOM_EXT` / `SMALL_ATOM_UTF8_EXT`.
pub const SMALL_ATOM_TAGS: u64 = 0x4000;
/// UTF-8 atoms (`ATOM_UTF8_EXT`, `SMALL_ATOM_UTF8_EXT`); mandatory since OTP 23.
pub const UTF8_ATOMS: u64 = 0x10000;
/// Maps (`MAP_EXT`); mandatory.
pub const MAP_TAG: u64 = 0x20000;
/// 32-bit creation values (`NEW_PID_EXT`, `NEW_PORT_EXT`, `NEWER_REFERENCE_EXT`); mandatory since OTP 23.
pub const BIG_CREATION: u64 = 0x40000;
/// Sends use `SEND_SENDER` / `SEND_SENDER_TT`, which name the sending pid.
pub const SEND_SENDER: u64 = 0x80000;
/// Sequential trace labels may be any term, not only small integers.
pub const BIG_SEQTRACE_LABELS: u64 = 0x100000;
/// Exits and monitor downs use the `*_PAYLOAD` control messages (reason after the control tuple).
pub const EXIT_PAYLOAD: u64 = 0x400000;
/// Large messages may be split into fragments (`131 69` / `131 70` headers).
pub const FRAGMENTS: u64 = 0x800000;
/// The OTP 23 handshake (`N` name message, 64-bit flags, creation exchanged); mandatory since OTP 25.
pub const HANDSHAKE_23: u64 = 0x1000000;
/// The unlink protocol with ids (`UNLINK_ID`, `UNLINK_ID_ACK`); mandatory since OTP 26.
pub const UNLINK_ID: u64 = 0x2000000;
/// Bit 26 of OTP's `dist.hrl`: flags the OTP 25 mandatory set (`DFLAG_MANDATORY_25_DIGEST`).
pub const MANDATORY_25_DIGEST: u64 = 0x4000000;
/// Remote spawn (`SPAWN_REQUEST`, `SPAWN_REPLY`), as used by `erlang:spawn_request/5`.
pub const SPAWN: u64 = 1 << 32;
/// Dynamic node names: the peer asks the accepting node to pick its name.
pub const NAME_ME: u64 = 1 << 33;
/// Version 4 node containers: pids, ports and references with 64-bit ids (`V4_PORT_EXT`).
pub const V4_NC: u64 = 1 << 34;
/// Process aliases (`ALIAS_SEND`, `ALIAS_SEND_TT`; `erlang:alias/0`).
pub const ALIAS: u64 = 1 << 35;

/// What OTP 25 and later require of every peer (`MANDATORY_DFLAGS_25` plus
/// the OTP 26 additions, which OTP 25 peers also offer).
pub const REQUIRED: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | NEW_FUN_TAGS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23;

/// What this node advertises. Not PUBLISHED (we are a hidden node). The
/// distribution header with atom cache references is read and written;
/// fragmented messages are reassembled, and large ones sent in fragments.
/// `SPAWN`: `SPAWN_REQUEST`s are served by `process::rpc`.
pub const ADVERTISED: u64 = REQUIRED
    | DIST_HDR_ATOM_CACHE
    | UNLINK_ID
    | V4_NC
    | MANDATORY_25_DIGEST
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | ALIAS
    | SEND_SENDER
    | EXIT_PAYLOAD
    | SMALL_ATOM_TAGS
    | BIG_SEQTRACE_LABELS
    | FRAGMENTS
    // `erpc` and (since OTP 23) `rpc` spawn through SPAWN_REQUEST.
    | SPAWN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_is_hidden_and_has_no_unimplemented_features() {
        assert_eq!(ADVERTISED & PUBLISHED, 0);
        assert_eq!(ADVERTISED & ATOM_CACHE, 0);
        assert_ne!(ADVERTISED & FRAGMENTS, 0);
        assert_ne!(ADVERTISED & DIST_HDR_ATOM_CACHE, 0);
        assert_eq!(MANDATORY_25_DIGEST, 1 << 26);
        assert_eq!(ADVERTISED & REQUIRED, REQUIRED);
        assert_ne!(ADVERTISED & SPAWN, 0);
    }
}
