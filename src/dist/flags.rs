//! Distribution capability flags, as raw bits.
//!
//! We keep our own constants instead of `erl_dist::DistributionFlags`
//! because that crate defines `MANDATORY_25_DIGEST` as bit 36 (which newer
//! OTP releases use for `DFLAG_LOCAL_EXT`); OTP's `dist.hrl` says bit 26.

pub const PUBLISHED: u64 = 0x01;
pub const ATOM_CACHE: u64 = 0x02;
pub const EXTENDED_REFERENCES: u64 = 0x04;
pub const DIST_MONITOR: u64 = 0x08;
pub const FUN_TAGS: u64 = 0x10;
pub const DIST_MONITOR_NAME: u64 = 0x20;
pub const HIDDEN_ATOM_CACHE: u64 = 0x40;
pub const NEW_FUN_TAGS: u64 = 0x80;
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
pub const EXPORT_PTR_TAG: u64 = 0x200;
pub const BIT_BINARIES: u64 = 0x400;
pub const NEW_FLOATS: u64 = 0x800;
pub const UNICODE_IO: u64 = 0x1000;
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
pub const SMALL_ATOM_TAGS: u64 = 0x4000;
pub const UTF8_ATOMS: u64 = 0x10000;
pub const MAP_TAG: u64 = 0x20000;
pub const BIG_CREATION: u64 = 0x40000;
pub const SEND_SENDER: u64 = 0x80000;
pub const BIG_SEQTRACE_LABELS: u64 = 0x100000;
pub const EXIT_PAYLOAD: u64 = 0x400000;
pub const FRAGMENTS: u64 = 0x800000;
pub const HANDSHAKE_23: u64 = 0x1000000;
pub const UNLINK_ID: u64 = 0x2000000;
pub const MANDATORY_25_DIGEST: u64 = 0x4000000;
pub const SPAWN: u64 = 1 << 32;
pub const NAME_ME: u64 = 1 << 33;
pub const V4_NC: u64 = 1 << 34;
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
/// fragments are not implemented.
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
    | BIG_SEQTRACE_LABELS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_is_hidden_and_has_no_unimplemented_features() {
        assert_eq!(ADVERTISED & PUBLISHED, 0);
        assert_eq!(ADVERTISED & (FRAGMENTS | ATOM_CACHE), 0);
        assert_ne!(ADVERTISED & DIST_HDR_ATOM_CACHE, 0);
        assert_eq!(MANDATORY_25_DIGEST, 1 << 26);
        assert_eq!(ADVERTISED & REQUIRED, REQUIRED);
    }
}
