//! A service's status proplist (`[{Key, Value}]`), read without knowing its
//! keys: the `locker` service's `{erl_quorum, status}` answer and the
//! `erl_quorum` service's `status` counters. New keys other helpers add to
//! either show up as metrics and status columns with no change here.
//!
//! Bounded: at most [`MAX_FIELDS`] fields, keys and atom values cut to
//! [`MAX_TEXT`] bytes of `[a-z0-9_]`, lists counted, not kept.

use crate::term::{as_atom, as_int, as_tuple, list_elements, Term};

/// Fields kept from one proplist.
pub const MAX_FIELDS: usize = 64;
/// Longest key or state value kept, in bytes.
pub const MAX_TEXT: usize = 64;

/// One field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// An integer, or the length of a list (`masters`, `connected`).
    Number(i64),
    /// An atom: a state such as `role`'s `master`.
    State(String),
}

/// A status proplist, in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFields(pub Vec<(String, FieldValue)>);

impl StatusFields {
    /// The fields of `term`; `None` if it is not a proplist.
    pub fn parse(term: &Term) -> Option<StatusFields> {
        let items = list_elements(term)?;
        let mut fields = Vec::new();
        for item in items.iter().take(MAX_FIELDS) {
            let Some([key, value]) = as_tuple(item) else {
                continue;
            };
            let Some(key) = as_atom(key).map(clean) else {
                continue;
            };
            let value = if let Some(n) = as_int(value) {
                FieldValue::Number(n)
            } else if let Some(a) = as_atom(value) {
                FieldValue::State(clean(a))
            } else if let Some(l) = list_elements(value) {
                FieldValue::Number(l.len() as i64)
            } else {
                continue;
            };
            if !key.is_empty() && !fields.iter().any(|(k, _)| *k == key) {
                fields.push((key, value));
            }
        }
        Some(StatusFields(fields))
    }

    /// The number under `key`.
    pub fn number(&self, key: &str) -> Option<i64> {
        self.0.iter().find_map(|(k, v)| match v {
            FieldValue::Number(n) if k == key => Some(*n),
            _ => None,
        })
    }

    /// The state under `key`.
    pub fn state(&self, key: &str) -> Option<&str> {
        self.0.iter().find_map(|(k, v)| match v {
            FieldValue::State(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// `text` as a metric-name part or label value: lower case `[a-z0-9_]`,
/// at most [`MAX_TEXT`] bytes.
fn clean(text: &str) -> String {
    text.chars()
        .take(MAX_TEXT)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int, list, tuple};

    #[test]
    fn numbers_states_and_list_lengths() {
        let t = list(vec![
            tuple(vec![atom("role"), atom("master")]),
            tuple(vec![atom("masters"), list(vec![atom("a@h"), atom("b@h")])]),
            tuple(vec![atom("entries"), int(3)]),
            tuple(vec![atom("entries"), int(9)]),
            tuple(vec![atom("Odd-Key"), int(1)]),
            tuple(vec![int(1), int(2)]),
            atom("junk"),
        ]);
        let f = StatusFields::parse(&t).unwrap();
        assert_eq!(f.state("role"), Some("master"));
        assert_eq!(f.number("masters"), Some(2));
        assert_eq!(f.number("entries"), Some(3), "the first of a key wins");
        assert_eq!(f.number("odd_key"), Some(1));
        assert_eq!(f.0.len(), 4);
        assert_eq!(StatusFields::parse(&atom("x")), None);
    }

    #[test]
    fn bounded_in_fields_and_text() {
        let long = "k".repeat(500);
        let many: Vec<_> = (0..1000)
            .map(|i| tuple(vec![atom(&format!("k{i}")), atom(&long)]))
            .collect();
        let f = StatusFields::parse(&list(many)).unwrap();
        assert_eq!(f.0.len(), MAX_FIELDS);
        assert!(f.0.iter().all(|(k, v)| k.len() <= MAX_TEXT
            && matches!(v, FieldValue::State(s) if s.len() == MAX_TEXT)));
    }
}
