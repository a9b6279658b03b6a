//! Property tests of [`Structure`] in plain f64: for random block sizes (a "head" of `block`
//! rows, as attention heads will be) and random keep-masks, cutting every coupled slice with
//! [`Slice::kept_indices`] gives exactly the function of the model whose removed groups are
//! zeroed, and the cut shapes are [`Structure::shapes_after`]'s.

use std::collections::BTreeMap;

use dgating_core::{Dim, Slice, Structure};
use proptest::prelude::*;

/// `y = W2 · relu(W1 · x + b1)` with `W1: [rows, inp]`, `W2: [out, rows]`, row-major.
fn forward(w1: &[f64], b1: &[f64], w2: &[f64], inp: usize, out: usize, x: &[f64]) -> Vec<f64> {
    let rows = b1.len();
    let h: Vec<f64> =
        (0..rows).map(|r| (b1[r] + (0..inp).map(|i| w1[r * inp + i] * x[i]).sum::<f64>()).max(0.0)).collect();
    (0..out).map(|o| (0..rows).map(|r| w2[o * rows + r] * h[r]).sum()).collect()
}

/// The entries of a row-major `[rows, cols]` matrix kept along `axis`.
fn select(m: &[f64], (rows, cols): (usize, usize), axis: usize, keep: &[usize]) -> Vec<f64> {
    match axis {
        0 => keep.iter().flat_map(|&r| m[r * cols..(r + 1) * cols].to_vec()).collect(),
        _ => (0..rows).flat_map(|r| keep.iter().map(move |&c| m[r * cols + c])).collect(),
    }
}

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f64 / 1000.0 - 1.0
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn cutting_blocks_equals_zeroing_groups(
        heads in 1usize..6,
        block in 1usize..5,
        inp in 1usize..5,
        out in 1usize..4,
        keep_bits in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let rows = heads * block;
        let dim = Dim::new("heads", heads, true, vec![
            Slice::new("w1", [rows, inp], 0, true).with_block(block),
            Slice::new("b1", [rows], 0, true).with_block(block),
            Slice::new("w2", [out, rows], 1, false).with_block(block),
        ]);
        let structure = Structure::new(vec![dim]).unwrap();
        let mut keep: Vec<bool> = (0..heads).map(|h| keep_bits >> h & 1 == 1).collect();
        keep[seed as usize % heads] = true;
        let kept: Vec<usize> = (0..heads).filter(|&h| keep[h]).collect();

        let (w1, b1, w2) = (values(rows * inp, seed), values(rows, seed ^ 1), values(out * rows, seed ^ 2));
        // Zero the removed groups (rows of w1 and entries of b1 of every removed head).
        let (mut w1z, mut b1z) = (w1.clone(), b1.clone());
        for r in 0..rows {
            if !keep[r / block] {
                w1z[r * inp..(r + 1) * inp].iter_mut().for_each(|v| *v = 0.0);
                b1z[r] = 0.0;
            }
        }
        // Cut every coupled slice.
        let d = &structure.dims()[0];
        let idx = |k: usize| d.slices[k].kept_indices(&kept);
        let w1c = select(&w1, (rows, inp), 0, &idx(0));
        let b1c: Vec<f64> = idx(1).iter().map(|&r| b1[r]).collect();
        let w2c = select(&w2, (out, rows), 1, &idx(2));

        let shapes = structure.shapes_after(&BTreeMap::from([("heads".to_string(), keep.clone())])).unwrap();
        prop_assert_eq!(&shapes["w1"], &vec![kept.len() * block, inp]);
        prop_assert_eq!(&shapes["w2"], &vec![out, kept.len() * block]);
        prop_assert_eq!(w1c.len(), shapes["w1"].iter().product::<usize>());
        prop_assert_eq!(b1c.len(), shapes["b1"][0]);

        let x = values(inp, seed ^ 3);
        // Exact: the cut sums skip terms the masked sums add as exact zeros, in the same order.
        prop_assert_eq!(forward(&w1z, &b1z, &w2, inp, out, &x), forward(&w1c, &b1c, &w2c, inp, out, &x));
    }

    #[test]
    fn a_block_that_does_not_divide_is_refused(heads in 1usize..6, block in 2usize..5, extra in 1usize..4) {
        let rows = heads * block + extra % block;
        let dim = Dim::new("heads", heads, true, vec![Slice::new("w", [rows, 3], 0, true).with_block(block)]);
        prop_assert_eq!(Structure::new(vec![dim]).is_ok(), extra % block == 0);
    }
}
