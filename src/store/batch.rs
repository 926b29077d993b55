//! Multi-row statements: one `INSERT … VALUES (…), (…), …` for many rows
//! instead of one statement a row.
//!
//! Why: every statement is a round trip to SQLite's worker thread (or to
//! PostgreSQL), and the flusher writes thousands of rows every two seconds
//! at 10,000 dynos; a restart claim waits behind the chunk being written.
//! A batch is cut into sizes of 1, 2, 4, … 2^(SIZES − 1) rows, largest
//! first, so a handful of texts cover every batch and each stays prepared
//! (a text per batch size would be prepared anew at each flush).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::OnceLock;

/// Sizes `1 << 0` … `1 << (SIZES - 1)`: up to 64 rows a statement (at 12
/// columns, 768 parameters: far under SQLite's 32,766 and PostgreSQL's
/// 65,535).
const SIZES: usize = 7;

/// One multi-row statement: `head` then `n` tuples of `cols` numbered
/// parameters (each followed by `fill`, constants every row has), then
/// `tail`.
pub(super) struct Batched {
    head: &'static str,
    cols: usize,
    fill: &'static str,
    tail: &'static str,
    texts: OnceLock<Vec<String>>,
}

impl Batched {
    pub(super) const fn new(head: &'static str, cols: usize, tail: &'static str) -> Self {
        Self::with_fill(head, cols, "", tail)
    }

    pub(super) const fn with_fill(
        head: &'static str,
        cols: usize,
        fill: &'static str,
        tail: &'static str,
    ) -> Self {
        Self {
            head,
            cols,
            fill,
            tail,
            texts: OnceLock::new(),
        }
    }

    /// The text for `2^k` rows.
    fn text(&self, k: usize) -> &str {
        self.texts
            .get_or_init(|| (0..SIZES).map(|k| self.build(1 << k)).collect())[k]
            .as_str()
    }

    fn build(&self, rows: usize) -> String {
        let mut sql = String::from(self.head);
        for i in 0..rows {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..self.cols {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", i * self.cols + c + 1));
            }
            sql.push_str(self.fill);
            sql.push(')');
        }
        sql.push_str(self.tail);
        sql
    }

    /// `rows` cut into the statement sizes, largest first: `(text, part)`.
    pub(super) fn parts<'r, T>(&self, rows: &'r [T]) -> Parts<'_, 'r, T> {
        Parts {
            batched: self,
            left: rows,
        }
    }
}

/// See [`Batched::parts`].
pub(super) struct Parts<'b, 'r, T> {
    batched: &'b Batched,
    left: &'r [T],
}

impl<'b, 'r, T> Iterator for Parts<'b, 'r, T> {
    type Item = (&'b str, &'r [T]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left.is_empty() {
            return None;
        }
        let k = (self.left.len().ilog2() as usize).min(SIZES - 1);
        let (part, rest) = self.left.split_at(1 << k);
        self.left = rest;
        Some((self.batched.text(k), part))
    }
}

/// `rows` in rounds where each key appears at most once (a multi-row upsert
/// may not meet one row twice on PostgreSQL): the n-th row of a key goes
/// into the n-th round, so the rounds, written in order, do what one upsert
/// after the other did. (Folding a key's rows into one first would not: an
/// upsert's rule — "the newest figure that is not NULL" — can pick the
/// stored row between two of them.) The flusher's batches have each key
/// once: one round.
pub(super) fn rounds<'r, T, K: Hash + Eq>(
    rows: &'r [T],
    key: impl Fn(&'r T) -> K,
) -> Vec<Vec<&'r T>> {
    let mut seen: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut rounds: Vec<Vec<&T>> = Vec::new();
    for r in rows {
        let n = *seen.entry(key(r)).and_modify(|n| *n += 1).or_insert(0);
        if rounds.len() == n {
            rounds.push(Vec::new());
        }
        rounds[n].push(r);
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    static T: Batched = Batched::new("INSERT INTO t (a, b) VALUES ", 2, " ON CONFLICT DO NOTHING");

    #[test]
    fn rows_are_cut_into_powers_of_two_and_numbered_in_order() {
        let rows: Vec<u32> = (0..100).collect();
        let sizes: Vec<usize> = T.parts(&rows).map(|(_, p)| p.len()).collect();
        assert_eq!(sizes, vec![64, 32, 4]);
        let all: Vec<u32> = T
            .parts(&rows)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        assert_eq!(all, rows);
        let (text, _) = T.parts(&rows[..2]).next().expect("a part");
        assert_eq!(
            text,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(T.parts::<u32>(&[]).count(), 0);
        let r = rounds(&[(1, 'a'), (2, 'b'), (1, 'c'), (1, 'd')], |r| r.0);
        assert_eq!(
            r,
            vec![vec![&(1, 'a'), &(2, 'b')], vec![&(1, 'c')], vec![&(1, 'd')]]
        );
        static F: Batched = Batched::with_fill("V ", 1, ", 0", "");
        assert_eq!(
            F.parts(&[1, 2]).next().expect("a part").0,
            "V ($1, 0), ($2, 0)"
        );
    }
}
