//! Mini-batch orders: which sample indices form each batch of an epoch. Indices only, so the
//! trainer decides how to gather them into tensors.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// The batches of one epoch over `n` samples: consecutive chunks of `batch_size` indices of
/// `0..n` in order, or of a permutation seeded by `shuffle_seed` ([`StdRng`], so the same
/// seed gives the same batches). The last batch may be smaller. `batch_size == 0` means one
/// batch of all `n` samples (full-batch training).
pub fn batch_indices(n: usize, batch_size: usize, shuffle_seed: Option<u64>) -> Vec<Vec<usize>> {
    BatchIter::new(n, batch_size, shuffle_seed).collect()
}

/// An iterator over the batches of [`batch_indices`], without building them all up front.
#[derive(Debug, Clone)]
pub struct BatchIter {
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
}

impl BatchIter {
    /// The batches over `n` samples; see [`batch_indices`].
    pub fn new(n: usize, batch_size: usize, shuffle_seed: Option<u64>) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        if let Some(seed) = shuffle_seed {
            order.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        let batch_size = if batch_size == 0 { n.max(1) } else { batch_size };
        Self { order, batch_size, pos: 0 }
    }

    /// The epoch's sample order (all batches concatenated).
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for BatchIter {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let batch = self.order[self.pos..end].to_vec();
        self.pos = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.pos).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchIter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffled_batches_are_consecutive_with_a_short_last_one() {
        assert_eq!(batch_indices(7, 3, None), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(batch_indices(6, 3, None).len(), 2);
        assert!(batch_indices(0, 3, None).is_empty());
        assert_eq!(batch_indices(4, 0, None), vec![vec![0, 1, 2, 3]]);
        assert_eq!(batch_indices(2, 10, None), vec![vec![0, 1]]);
    }

    #[test]
    fn shuffled_batches_are_a_seeded_permutation() {
        let a = batch_indices(50, 8, Some(3));
        assert_eq!(a, batch_indices(50, 8, Some(3)));
        assert_ne!(a, batch_indices(50, 8, Some(4)));
        assert_ne!(a, batch_indices(50, 8, None));
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 8, 8, 8, 8, 8, 2]);
        let mut all = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_iterator_knows_its_length() {
        let mut it = BatchIter::new(10, 4, Some(1));
        assert_eq!(it.len(), 3);
        it.next();
        assert_eq!(it.len(), 2);
        assert_eq!(it.order().len(), 10);
    }
}
