//! [`Staged`]: writes not yet committed, layered over an [`Engine`], so that several commands can
//! be applied into one batch and each still reads what the ones before it wrote.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Batch, BatchOp, Engine, Table};
use crate::Result;

/// An engine whose reads see `base` with the staged writes on top; writes only stage.
///
/// Invariant: every read answers as `base` would after committing every staged write in order
/// (a staged `None` is a delete). Nothing reaches `base`: the caller commits the same writes in
/// one batch afterwards, or drops them.
pub(super) struct Staged<'a, E> {
    base: &'a E,
    /// Per table: key -> value, `None` for a deleted key.
    writes: BTreeMap<Table, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl<'a, E: Engine> Staged<'a, E> {
    pub(super) fn new(base: &'a E) -> Self {
        Staged { base, writes: BTreeMap::new() }
    }

    /// Stages `ops` (in order: a later write to a key wins).
    pub(super) fn stage(&mut self, ops: &[BatchOp]) {
        for op in ops {
            match op {
                BatchOp::Put { table, key, value } => {
                    self.writes.entry(*table).or_default().insert(key.clone(), Some(value.clone()));
                }
                BatchOp::Delete { table, key } => {
                    self.writes.entry(*table).or_default().insert(key.clone(), None);
                }
            }
        }
    }

    /// The staged writes of `table` in `[start, end)` (`end == None`: no upper bound).
    fn staged_range<'s>(
        &'s self,
        table: Table,
        start: &'s [u8],
        end: Option<&'s [u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'s Vec<u8>, &'s Option<Vec<u8>>)> + 's {
        // `BTreeMap::range` panics when start > end; an empty range has nothing staged anyway.
        let empty = end.is_some_and(|end| start >= end);
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.writes
            .get(&table)
            .filter(|_| !empty)
            .into_iter()
            .flat_map(move |t| t.range::<[u8], _>((Bound::Included(start), upper)))
    }

    fn staged(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(&table).and_then(|t| t.get(key))
    }
}

impl<E: Engine> Engine for Staged<'_, E> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.staged(table, key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(table, key),
        }
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        // Merge the two ordered streams; a staged write replaces the base entry of its key.
        let mut staged = self.staged_range(table, start, end).peekable();
        let mut stopped = false;
        self.base.scan(table, start, end, &mut |k, v| {
            while let Some((sk, sv)) = staged.next_if(|(sk, _)| sk.as_slice() <= k) {
                let replaces = sk.as_slice() == k;
                if let Some(sv) = sv {
                    if !f(sk, sv) {
                        stopped = true;
                        return false;
                    }
                }
                if replaces {
                    return true;
                }
            }
            if !f(k, v) {
                stopped = true;
                return false;
            }
            true
        })?;
        if !stopped {
            for (sk, sv) in staged {
                if let Some(sv) = sv {
                    if !f(sk, sv) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn last_in(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(None);
        }
        let staged =
            self.staged_range(table, start, Some(end)).rev().find_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        // The last base entry that no staged delete hides (staged puts are covered by `staged`).
        let mut upper = end.to_vec();
        let base = loop {
            match self.base.last_in(table, start, &upper)? {
                Some((k, _)) if matches!(self.staged(table, &k), Some(None)) => upper = k,
                found => break found,
            }
        };
        Ok(match (staged, base) {
            (Some((sk, sv)), Some((bk, bv))) => {
                if sk.as_slice() >= bk.as_slice() {
                    Some((sk.clone(), sv.clone()))
                } else {
                    Some((bk, bv))
                }
            }
            (Some((sk, sv)), None) => Some((sk.clone(), sv.clone())),
            (None, base) => base,
        })
    }

    /// Stages the batch (see [`Staged`]: nothing reaches the base engine).
    fn write(&mut self, batch: Batch) -> Result<()> {
        self.stage(&batch.ops);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::mem::MemEngine;

    fn scan_all(e: &impl Engine, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        e.scan(Table::History, start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })
        .unwrap();
        out
    }

    fn random_ops(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<BatchOp> {
        (0..n)
            .map(|_| {
                let key = vec![b'a' + rng.random_range(0..12u8)];
                if rng.random_bool(0.3) {
                    BatchOp::Delete { table: Table::History, key }
                } else {
                    BatchOp::Put { table: Table::History, key, value: vec![rng.random::<u8>()] }
                }
            })
            .collect()
    }

    #[test]
    fn staged_reads_match_the_base_after_committing_the_staged_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..300 {
            let mut base = MemEngine::default();
            base.write(Batch { ops: random_ops(&mut rng, 8) }).unwrap();
            let n = rng.random_range(0..10);
            let staged_ops = random_ops(&mut rng, n);
            // The base with the staged writes committed, built independently.
            let mut expected = MemEngine::default();
            let copy = scan_all(&base, &[], None, usize::MAX)
                .into_iter()
                .map(|(key, value)| BatchOp::Put { table: Table::History, key, value })
                .collect();
            expected.write(Batch { ops: copy }).unwrap();
            expected.write(Batch { ops: staged_ops.clone() }).unwrap();

            let mut staged = Staged::new(&base);
            staged.stage(&staged_ops);
            for key in b'a'..=b'm' {
                assert_eq!(
                    staged.get(Table::History, &[key]).unwrap(),
                    expected.get(Table::History, &[key]).unwrap()
                );
            }
            for _ in 0..10 {
                let a = vec![b'a' + rng.random_range(0..13u8)];
                let b = vec![b'a' + rng.random_range(0..13u8)];
                let end = rng.random_bool(0.8).then_some(b.as_slice());
                let limit = rng.random_range(1..15);
                assert_eq!(
                    scan_all(&staged, &a, end, limit),
                    scan_all(&expected, &a, end, limit),
                    "round {round}: scan [{a:?}, {end:?}) limit {limit}"
                );
                assert_eq!(
                    staged.last_in(Table::History, &a, &b).unwrap(),
                    expected.last_in(Table::History, &a, &b).unwrap(),
                    "round {round}: last in [{a:?}, {b:?})"
                );
            }
        }
    }
}
