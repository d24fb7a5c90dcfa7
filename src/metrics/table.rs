//! `erl_quorum status`: one row per master (or replica), Rust or BEAM, as
//! an aligned table or as Erlang terms for scripts. Pure: the rows are
//! read by the binary's `ops::status`; what they hold is the status
//! proplists of [`super::fields`], so a field a service adds later shows
//! in the `terms` form with no change here.
//!
//! Columns (any field a node does not report prints `-`):
//!
//! | column | from |
//! | --- | --- |
//! | NODE | the node name |
//! | KIND | `rust` (erl_quorum), `beam` (wooga/locker), `?` (unreachable) |
//! | UP | whether the node answered |
//! | ROLE | `master`, `replica`, `both`, `neither` (by its last `set_nodes`) |
//! | W | its quorum size |
//! | MASTERS | how many masters it knows |
//! | WLOCKS | write locks (phase-1 promises) it holds |
//! | ENTRIES | keys it holds (leases: locks, shard and session entries) |
//! | SESSIONS | erl_quorum sessions it keeps (Rust masters) |
//! | WAITERS | callers parked in `wait_for` / `wait_for_release` |
//! | GUARD | `serving`; `guard Ns` while the restart guard refuses promises; `catching up` while a restarted master catches up |
//! | PEERS | nodes it is connected to |
//! | SLOTS | locks and names its erl_quorum service serves (Rust) |
//! | SHARDS | shards its erl_quorum service holds on W masters |
//! | SESSION_MS | how long every hold it serves is safe for, from now |
//! | SUBS | processes subscribed to its name changes |

use super::fields::{FieldValue, StatusFields};

/// Which implementation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An erl_quorum node.
    Rust,
    /// A BEAM node running wooga/locker.
    Beam,
    /// Not reachable: unknown.
    Unknown,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Rust => "rust",
            Kind::Beam => "beam",
            Kind::Unknown => "?",
        }
    }
}

/// One node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The node name.
    pub node: String,
    /// What answered.
    pub kind: Kind,
    /// Why the node could not be asked (`None`: it answered).
    pub error: Option<String>,
    /// The locker service's fields (a BEAM locker's are made from
    /// `get_meta` and `get_debug_state`).
    pub locker: Option<StatusFields>,
    /// The erl_quorum service's `status` (Rust serving nodes).
    pub services: Option<StatusFields>,
}

/// The longest error text printed.
const MAX_ERROR: usize = 120;

impl StatusRow {
    fn locker_number(&self, key: &str) -> Option<i64> {
        self.locker.as_ref()?.number(key)
    }

    fn services_number(&self, key: &str) -> Option<i64> {
        self.services.as_ref()?.number(key)
    }

    /// The GUARD column.
    fn guard(&self) -> Option<String> {
        let locker = self.locker.as_ref()?;
        if let Some(ms) = locker.number("guard_remaining_ms").filter(|ms| *ms > 0) {
            return Some(format!("guard {}s", (ms + 999) / 1000));
        }
        let catching_up = locker.0.iter().any(|(k, v)| {
            k.contains("catch")
                && match v {
                    FieldValue::Number(n) => *n > 0,
                    FieldValue::State(s) => !matches!(
                        s.as_str(),
                        "serving" | "caught_up" | "done" | "idle" | "none" | "false"
                    ),
                }
        });
        if catching_up {
            return Some("catching up".into());
        }
        locker
            .number("guard_remaining_ms")
            .map(|_| "serving".to_owned())
    }

    fn cells(&self) -> Vec<String> {
        let n = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
        let role = self.locker.as_ref().and_then(|l| l.state("role"));
        vec![
            self.node.clone(),
            self.kind.label().to_owned(),
            if self.error.is_none() { "yes" } else { "no" }.to_owned(),
            role.unwrap_or("-").to_owned(),
            n(self.locker_number("w")),
            n(self.locker_number("masters")),
            n(self.locker_number("promises")),
            n(self.locker_number("entries")),
            n(self.locker_number("sessions")),
            n(self.locker_number("waiters")),
            self.guard().unwrap_or_else(|| "-".into()),
            n(self.locker_number("connected")),
            n(self.services_number("slots")),
            n(self.services_number("shards_held")),
            n(self.services_number("session_valid_ms")),
            n(self.services_number("subscribers")),
        ]
    }
}

const HEADER: [&str; 16] = [
    "NODE",
    "KIND",
    "UP",
    "ROLE",
    "W",
    "MASTERS",
    "WLOCKS",
    "ENTRIES",
    "SESSIONS",
    "WAITERS",
    "GUARD",
    "PEERS",
    "SLOTS",
    "SHARDS",
    "SESSION_MS",
    "SUBS",
];

/// The rows as an aligned table, with the errors of unreachable nodes
/// below it.
pub fn render_table(rows: &[StatusRow]) -> String {
    let mut lines: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows.iter().map(StatusRow::cells));
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for row in rows {
        if let Some(e) = &row.error {
            out.push_str(&format!("{}: {}\n", row.node, cut(e)));
        }
    }
    out
}

/// One Erlang term per row, each ending in `.` (`file:consult/1` reads
/// them): `{Node, [{kind, K}, {reachable, B}, {locker, [...]},
/// {erl_quorum, [...]}]}` (`{error, "..."}` instead of the services for
/// a node that did not answer).
pub fn render_terms(rows: &[StatusRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let mut items = vec![
            format!("{{kind,{}}}", quote_atom(row.kind.label())),
            format!("{{reachable,{}}}", row.error.is_none()),
        ];
        if let Some(e) = &row.error {
            items.push(format!("{{error,{}}}", quote_string(&cut(e))));
        }
        for (key, fields) in [("locker", &row.locker), ("erl_quorum", &row.services)] {
            if let Some(fields) = fields {
                let inner: Vec<String> = fields
                    .0
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            FieldValue::Number(n) => n.to_string(),
                            FieldValue::State(s) => quote_atom(s),
                        };
                        format!("{{{},{v}}}", quote_atom(k))
                    })
                    .collect();
                items.push(format!("{{{key},[{}]}}", inner.join(",")));
            }
        }
        out.push_str(&format!(
            "{{{},[{}]}}.\n",
            quote_atom(&row.node),
            items.join(",")
        ));
    }
    out
}

fn cut(text: &str) -> String {
    let mut s: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR)
        .collect();
    if text.chars().count() > MAX_ERROR {
        s.push_str("...");
    }
    s
}

/// An atom as Erlang reads it: bare when it can be, else quoted.
fn quote_atom(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if bare {
        name.to_owned()
    } else {
        format!("'{}'", escape(name, '\''))
    }
}

fn quote_string(text: &str) -> String {
    format!("\"{}\"", escape(text, '"'))
}

fn escape(text: &str, quote: char) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c == quote || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(items: &[(&str, FieldValue)]) -> StatusFields {
        StatusFields(
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn rust_row() -> StatusRow {
        use FieldValue::{Number as N, State as S};
        StatusRow {
            node: "m0@127.0.0.1".into(),
            kind: Kind::Rust,
            error: None,
            locker: Some(fields(&[
                ("role", S("master".into())),
                ("masters", N(3)),
                ("w", N(2)),
                ("entries", N(40)),
                ("promises", N(1)),
                ("sessions", N(2)),
                ("waiters", N(0)),
                ("guard_remaining_ms", N(0)),
                ("connected", N(4)),
            ])),
            services: Some(fields(&[
                ("slots", N(5)),
                ("shards_held", N(21)),
                ("session_valid_ms", N(9400)),
                ("subscribers", N(1)),
            ])),
        }
    }

    #[test]
    fn a_table_with_aligned_columns_and_dashes_for_the_unknown() {
        let mut guarded = rust_row();
        guarded.node = "m1@127.0.0.1".into();
        guarded.services = None;
        if let Some(l) = guarded.locker.as_mut() {
            l.0[7].1 = FieldValue::Number(4_200);
        }
        let beam = StatusRow {
            node: "beam_master@127.0.0.1".into(),
            kind: Kind::Beam,
            error: None,
            locker: Some(fields(&[
                ("role", FieldValue::State("master".into())),
                ("w", FieldValue::Number(2)),
                ("entries", FieldValue::Number(7)),
            ])),
            services: None,
        };
        let down = StatusRow {
            node: "gone@127.0.0.1".into(),
            kind: Kind::Unknown,
            error: Some("no connection to the server's node".into()),
            locker: None,
            services: None,
        };
        let text = render_table(&[rust_row(), guarded, beam, down]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        let header = lines[0];
        assert!(
            header.starts_with("NODE                   KIND  UP   ROLE    W  MASTERS"),
            "{text}"
        );
        // Every column starts where its header does.
        let at = |name: &str| header.find(name).unwrap();
        let cell = |line: &str, name: &str| {
            line[at(name)..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(cell(lines[1], "ENTRIES"), "40");
        assert_eq!(cell(lines[1], "GUARD"), "serving");
        assert_eq!(cell(lines[1], "SHARDS"), "21");
        assert_eq!(cell(lines[1], "SESSION_MS"), "9400");
        assert_eq!(&lines[2][at("GUARD")..at("GUARD") + 8], "guard 5s");
        assert_eq!(cell(lines[2], "SLOTS"), "-");
        assert_eq!(cell(lines[3], "KIND"), "beam");
        assert_eq!(cell(lines[3], "SESSIONS"), "-");
        assert_eq!(cell(lines[3], "GUARD"), "-");
        assert_eq!(cell(lines[4], "UP"), "no");
        assert_eq!(
            lines[5],
            "gone@127.0.0.1: no connection to the server's node"
        );
    }

    #[test]
    fn catching_up_shows_from_a_field_the_guard_helper_adds() {
        let mut row = rust_row();
        if let Some(l) = row.locker.as_mut() {
            l.0.push(("catch_up".into(), FieldValue::State("catching_up".into())));
        }
        assert_eq!(row.guard().as_deref(), Some("catching up"));
        if let Some(l) = row.locker.as_mut() {
            l.0.last_mut().unwrap().1 = FieldValue::State("caught_up".into());
        }
        assert_eq!(row.guard().as_deref(), Some("serving"));
    }

    #[test]
    fn terms_for_scripts() {
        let down = StatusRow {
            node: "x'y@h".into(),
            kind: Kind::Unknown,
            error: Some("said \"no\"\n".into()),
            locker: None,
            services: None,
        };
        let text = render_terms(&[rust_row(), down]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "{'m0@127.0.0.1',[{kind,rust},{reachable,true},{locker,[{role,master},{masters,3},"
            ),
            "{text}"
        );
        assert!(lines[0].ends_with(
            "{erl_quorum,[{slots,5},{shards_held,21},{session_valid_ms,9400},{subscribers,1}]}]}."
        ));
        assert_eq!(
            lines[1],
            r#"{'x\'y@h',[{kind,'?'},{reachable,false},{error,"said \"no\""}]}."#
        );
    }
}
