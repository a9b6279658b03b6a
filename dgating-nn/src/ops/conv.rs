//! `conv2d(x, w, b)` (NCHW, optional fused ReLU) as one op whose backward is two GEMM passes.
//!
//! candle 0.11's CPU conv training path copies through scalar im2col / NHWC loops, computes the
//! input gradient with a direct loop and reduces the bias gradient over a non-trailing axis
//! (docs/PERFORMANCE.md). Here, per sample `b` (samples split across the thread pool):
//!
//! * forward: `col_b = im2col(x_b)` (`[C·kh·kw, Ho·Wo]`), `y_b = W · col_b + b` — the GEMM writes
//!   `[O, Ho·Wo]`, which is already the NCHW layout of the output; ReLU in place when fused;
//! * backward, weight side: `dW += dy_b · col_bᵀ` and `db += Σ_p dy_b[:, p]` in the same pass
//!   over the sample (`col_b` recomputed, not stored);
//! * backward, input side (only when `x` is tracked — never for the data batch):
//!   `dcol_b = Wᵀ · dy_b`, then `col2im` adds it into `dx_b`.
//!
//! Samples are processed in blocks (the columns of several samples side by side, up to 4 M
//! elements): one GEMM per block instead of one per sample keeps the small late-layer maps
//! (`Ho·Wo` of 4 or 16) efficient.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::linear::{ReluBackward, relu_in_place};
use crate::ops::storage::{Float, contiguous, filled};

/// Stride and zero padding of a convolution (the same along both spatial axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output positions.
    pub stride: usize,
    /// Zeros added on each side of both spatial axes.
    pub padding: usize,
}

impl Conv2dParams {
    /// Stride and padding.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self { stride, padding }
    }
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], p: Conv2dParams) -> std::result::Result<Self, String> {
        let ([batch, c, h, wd], [o, wc, kh, kw]) = (x, w) else {
            return Err(format!(
                "conv2d needs x [batch, channels, height, width] and w [out, in, kh, kw], got {x:?} and {w:?}"
            ));
        };
        if c != wc {
            return Err(format!("input has {c} channels, the filters read {wc}"));
        }
        if p.stride == 0 || *kh == 0 || *kw == 0 {
            return Err(format!("stride {} and kernel {kh}x{kw} must be >= 1", p.stride));
        }
        let (hp, wp) = (h + 2 * p.padding, wd + 2 * p.padding);
        if hp < *kh || wp < *kw {
            return Err(format!("a {kh}x{kw} kernel does not fit a {h}x{wd} input with padding {}", p.padding));
        }
        let (ho, wo) = ((hp - kh) / p.stride + 1, (wp - kw) / p.stride + 1);
        Ok(Self {
            batch: *batch,
            c: *c,
            h: *h,
            w: *wd,
            o: *o,
            kh: *kh,
            kw: *kw,
            stride: p.stride,
            pad: p.padding,
            ho,
            wo,
        })
    }

    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn p(&self) -> usize {
        self.ho * self.wo
    }

    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.o * self.p()
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.batch, self.o, self.ho, self.wo))
    }
}

/// The output columns `ox` whose input column `ox·s + j − pad` lies inside `[0, w)`.
fn valid_cols(g: &Geometry, j: usize) -> (usize, usize) {
    let s = g.stride;
    let lo = g.pad.saturating_sub(j).div_ceil(s).min(g.wo);
    let hi = if g.w + g.pad > j { ((g.w + g.pad - j - 1) / s + 1).min(g.wo) } else { 0 };
    (lo, hi.max(lo))
}

/// Output maps up to this many positions use the [`Plan::Gather`] table (4×4 and smaller: 16 was
/// faster than 4 or 64 on a VGG-11 ×0.25 step, docs/PERFORMANCE.md).
const GATHER_MAX_P: usize = 16;

/// How [`im2col`] and [`col2im`] walk one geometry, chosen once per op call.
///
/// * `Gather`: small output maps (`Ho·Wo ≤ 16`: VGG's late layers). There a column
///   row is 1 to 16 elements, and the per-row work of the other walks (bounds, fills, the
///   wrap-around stores) cost more than the copy itself — perf put ~8% of a VGG-11 ×0.25 step in
///   that bookkeeping. The table holds, for each element of one sample's column matrix, its
///   index in the sample's input (or [`PAD`]), so im2col is one gather and col2im one
///   scatter-add, with no arithmetic per row.
/// * `Same`: stride 1 with the output as wide as the input ([`Same`]).
/// * `Rows`: anything else, one copy per output row.
enum Plan {
    Gather(Vec<u32>),
    Same,
    Rows,
}

/// A padding element in a [`Plan::Gather`] table (`x.get(PAD)` is `None`).
const PAD: u32 = u32::MAX;

impl Plan {
    fn new(g: &Geometry) -> Self {
        if g.p() <= GATHER_MAX_P && g.in_len() < PAD as usize {
            Plan::Gather(gather_table(g))
        } else if Same::of(g).is_some() {
            Plan::Same
        } else {
            Plan::Rows
        }
    }
}

/// `table[((c·kh + i)·kw + j)·P + oy·wo + ox]` = the index of `x[c, oy·s + i − pad, ox·s + j −
/// pad]` in one sample, or [`PAD`] outside the input.
fn gather_table(g: &Geometry) -> Vec<u32> {
    let mut table = Vec::with_capacity(g.k() * g.p());
    for c in 0..g.c {
        for i in 0..g.kh {
            for j in 0..g.kw {
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + i).checked_sub(g.pad).filter(|&iy| iy < g.h);
                    for ox in 0..g.wo {
                        let ix = (ox * g.stride + j).checked_sub(g.pad).filter(|&ix| ix < g.w);
                        table.push(match (iy, ix) {
                            (Some(iy), Some(ix)) => ((c * g.h + iy) * g.w + ix) as u32,
                            _ => PAD,
                        });
                    }
                }
            }
        }
    }
    table
}

/// `col[(c·kh + i)·kw + j, off + oy·wo + ox] = x[c, oy·s + i − pad, ox·s + j − pad]` (0
/// outside) for one sample, into a column matrix with rows of `ld` (several samples side by
/// side).
fn im2col<T: Copy + num_traits::Zero>(x: &[T], g: &Geometry, plan: &Plan, col: &mut [T], ld: usize, off: usize) {
    match plan {
        Plan::Gather(table) => {
            for (r, src) in table.chunks_exact(g.p()).enumerate() {
                for (v, &s) in col[r * ld + off..][..g.p()].iter_mut().zip(src) {
                    *v = x.get(s as usize).copied().unwrap_or(T::zero());
                }
            }
        }
        Plan::Same => Same { g }.im2col(x, col, ld, off),
        Plan::Rows => im2col_rows(x, g, col, ld, off),
    }
}

/// [`im2col`] one output row at a time (any stride and padding).
fn im2col_rows<T: Copy + num_traits::Zero>(x: &[T], g: &Geometry, col: &mut [T], ld: usize, off: usize) {
    let (p, s) = (g.p(), g.stride);
    for c in 0..g.c {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let (lo, hi) = valid_cols(g, j);
                let row = &mut col[((c * g.kh + i) * g.kw + j) * ld + off..][..p];
                for oy in 0..g.ho {
                    let out = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * s + i) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(T::zero());
                        continue;
                    }
                    let xrow = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    if hi == lo {
                        continue;
                    }
                    let start = lo * s + j - g.pad;
                    if s == 1 {
                        out[lo..hi].copy_from_slice(&xrow[start..start + hi - lo]);
                    } else {
                        for (v, &xv) in out[lo..hi].iter_mut().zip(xrow[start..].iter().step_by(s)) {
                            *v = xv;
                        }
                    }
                }
            }
        }
    }
}

/// Stride 1 with "same" width (`wo = w`, a `(2·pad + 1)`-wide kernel: every 3×3 / pad 1 conv of
/// VGG and ResNet): an output row of `col` and the input plane then have the same row stride,
/// so the rows a kernel offset `(i, j)` reads are **one contiguous copy** of the plane shifted by
/// `(i − pad)·w + (j − pad)`, instead of one short copy (and two tiny fills) per output row. The
/// copy wraps around at the row ends: the `|j − pad|` columns whose input lies outside the
/// plane are then set to zero with strided stores. (im2col's per-row copies were ~40% of a
/// compacted VGG's inference time; perf, docs/PERFORMANCE.md.)
struct Same<'g> {
    g: &'g Geometry,
}

impl<'g> Same<'g> {
    fn of(g: &'g Geometry) -> Option<Self> {
        (g.stride == 1 && g.wo == g.w && g.w > 0).then_some(Self { g })
    }

    /// For kernel offset `(i, j)`: the shift of the source index and the range `[a, b)` of
    /// output positions (`oy·w + ox`) whose shifted source lies inside the plane; positions
    /// outside it, and the wrapped columns inside it, are padding.
    fn span(&self, i: usize, j: usize) -> (isize, usize, usize) {
        let g = self.g;
        let (w, plane) = (g.w as isize, (g.h * g.w) as isize);
        let (dy, dx) = (i as isize - g.pad as isize, j as isize - g.pad as isize);
        let oy_lo = (-dy).max(0);
        let oy_hi = (g.h as isize - dy).min(g.ho as isize).max(oy_lo);
        let shift = dy * w + dx;
        let a = (oy_lo * w).max(-shift).min(oy_hi * w);
        let b = (oy_hi * w).min(plane - shift).max(a);
        (shift, a as usize, b as usize)
    }

    /// Zeroes the columns of `row[a..b]` that the contiguous copy wrapped around a row end.
    fn zero_wrapped<T: Copy + num_traits::Zero>(&self, row: &mut [T], j: usize, a: usize, b: usize) {
        let (w, dx) = (self.g.w, j as isize - self.g.pad as isize);
        let cols = if dx < 0 { 0..(-dx as usize).min(w) } else { w.saturating_sub(dx as usize)..w };
        for ox in cols {
            // Strided stores (one per row), not a fill: no call per row.
            let first = a + (ox + w - a % w) % w;
            let mut q = first;
            while q < b {
                row[q] = T::zero();
                q += w;
            }
        }
    }

    fn im2col<T: Copy + num_traits::Zero>(&self, x: &[T], col: &mut [T], ld: usize, off: usize) {
        let g = self.g;
        let (p, plane) = (g.p(), g.h * g.w);
        for c in 0..g.c {
            let xc = &x[c * plane..(c + 1) * plane];
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let row = &mut col[((c * g.kh + i) * g.kw + j) * ld + off..][..p];
                    let (shift, a, b) = self.span(i, j);
                    row[..a].fill(T::zero());
                    row[b..].fill(T::zero());
                    if b > a {
                        let src = (a as isize + shift) as usize;
                        row[a..b].copy_from_slice(&xc[src..src + (b - a)]);
                        self.zero_wrapped(row, j, a, b);
                    }
                }
            }
        }
    }

    /// The adjoint: the wrapped columns of `col` are zeroed first (they read padding), then each
    /// offset's rows are added to the shifted plane in one contiguous pass.
    fn col2im<T: Copy + num_traits::Zero + std::ops::AddAssign>(
        &self,
        col: &mut [T],
        dx: &mut [T],
        ld: usize,
        off: usize,
    ) {
        let g = self.g;
        let (p, plane) = (g.p(), g.h * g.w);
        for c in 0..g.c {
            let dxc = &mut dx[c * plane..(c + 1) * plane];
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let row = &mut col[((c * g.kh + i) * g.kw + j) * ld + off..][..p];
                    let (shift, a, b) = self.span(i, j);
                    if b == a {
                        continue;
                    }
                    self.zero_wrapped(row, j, a, b);
                    let dst = (a as isize + shift) as usize;
                    for (d, &v) in dxc[dst..dst + (b - a)].iter_mut().zip(&row[a..b]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c, iy, ix] += col[...]` for every position that read it.
/// `col` is scratch: the "same" fast path zeroes its wrapped columns in place.
fn col2im<T: Copy + num_traits::Zero + std::ops::AddAssign>(
    col: &mut [T],
    g: &Geometry,
    plan: &Plan,
    dx: &mut [T],
    ld: usize,
    off: usize,
) {
    match plan {
        Plan::Gather(table) => {
            for (r, dst) in table.chunks_exact(g.p()).enumerate() {
                for (&v, &d) in col[r * ld + off..][..g.p()].iter().zip(dst) {
                    if let Some(t) = dx.get_mut(d as usize) {
                        *t += v;
                    }
                }
            }
        }
        Plan::Same => Same { g }.col2im(col, dx, ld, off),
        Plan::Rows => col2im_rows(col, g, dx, ld, off),
    }
}

/// [`col2im`] one output row at a time.
fn col2im_rows<T: Copy + num_traits::Zero + std::ops::AddAssign>(
    col: &[T],
    g: &Geometry,
    dx: &mut [T],
    ld: usize,
    off: usize,
) {
    let (p, s) = (g.p(), g.stride);
    for c in 0..g.c {
        let dxc = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let (lo, hi) = valid_cols(g, j);
                let row = &col[((c * g.kh + i) * g.kw + j) * ld + off..][..p];
                for oy in 0..g.ho {
                    let iy = (oy * s + i) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    if hi == lo {
                        continue;
                    }
                    let drow = &mut dxc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let start = lo * s + j - g.pad;
                    let src = &row[oy * g.wo + lo..oy * g.wo + hi];
                    if s == 1 {
                        for (d, &v) in drow[start..start + hi - lo].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in drow[start..].iter_mut().step_by(s).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// A row-major `[rows, cols]` operand, or its transpose.
#[derive(Clone, Copy)]
struct Mat<'a, T> {
    data: &'a [T],
    /// Strides of the logical matrix: row, column.
    rs: isize,
    cs: isize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `[rows, cols]` matrix read as is.
    fn n(data: &'a [T], cols: usize) -> Self {
        Self { data, rs: cols as isize, cs: 1 }
    }

    /// A row-major `[rows, cols]` matrix read as its transpose `[cols, rows]`.
    fn t(data: &'a [T], cols: usize) -> Self {
        Self { data, rs: 1, cs: cols as isize }
    }
}

/// How a gemm destination `[m, n]` is laid out in its contiguous slice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dst {
    RowMajor,
    ColMajor,
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` with `dst` contiguous in the given layout.
fn gemm_into<T: Float>(
    (m, n, k): (usize, usize, usize),
    (dst, layout): (&mut [T], Dst),
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() == m * n, "gemm_into: dst of {} for {m}x{n}", dst.len());
    let reach = |a: Mat<'_, T>, r: usize, c: usize| (r - 1) as isize * a.rs + (c - 1) as isize * a.cs;
    if m == 0 || n == 0 || k == 0 {
        if !accumulate {
            dst.fill(T::zero());
        }
        return;
    }
    assert!(reach(lhs, m, k) < lhs.data.len() as isize && reach(rhs, k, n) < rhs.data.len() as isize);
    let (dst_cs, dst_rs) = match layout {
        Dst::RowMajor => (1, n as isize),
        Dst::ColMajor => (m as isize, 1),
    };
    // SAFETY: `dst` holds exactly m·n elements addressed in `layout`; the asserts above check that
    // the largest offset each operand's strides reach lies inside its slice (strides are >= 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs,
            lhs.rs,
            rhs.data.as_ptr(),
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Column-matrix elements per block of samples processed together: the im2col buffer of a
/// block (1 MiB in f32) stays in cache between being written and being read by the gemm. With
/// 16 MiB blocks a batch of 64 ran slower per sample than a batch of 1 (memory-bound im2col).
const MAX_COL: usize = 1 << 18;

/// Fewest gemm columns per block: small maps (7×7) take several samples per block, so that the
/// gemm's packing of the weights is spread over enough columns.
const MIN_COLS: usize = 512;

/// Samples per parallel task and gemm's own parallelism (used when there are fewer samples
/// than threads, e.g. batch-1 inference).
fn split(g: &Geometry) -> (usize, Parallelism) {
    let threads = candle_core::utils::get_num_threads();
    let macs = g.o * g.k() * g.p();
    if threads < 2 || g.batch * macs < (1 << 17) {
        (g.batch.max(1), Parallelism::None)
    } else if g.batch >= threads {
        (g.batch.div_ceil(threads), Parallelism::None)
    } else {
        (1, Parallelism::Rayon(threads))
    }
}

/// Runs `f(first sample, samples, col buffer [K, n·P])` over blocks of the task's samples that
/// fit [`MAX_COL`].
/// The buffer is this thread's scratch slot 0: its contents are unspecified, `f` must write
/// what it reads (im2col writes every element, padding zeros included).
fn blocks<T: Float>(samples: usize, g: &Geometry, mut f: impl FnMut(usize, usize, &mut [T])) {
    let per = (MAX_COL / (g.k() * g.p()).max(1)).max(MIN_COLS.div_ceil(g.p().max(1))).clamp(1, samples.max(1));
    T::with_scratch(0, g.k() * g.p() * per, |col| {
        let mut first = 0;
        while first < samples {
            let n = per.min(samples - first);
            f(first, n, &mut col[..g.k() * g.p() * n]);
            first += n;
        }
    });
}

fn conv_forward<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, g: &Geometry, relu: bool) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let plan = Plan::new(g);
    let (chunk, par) = split(g);
    let body = |y: &mut [std::mem::MaybeUninit<T>]| {
        y.par_chunks_mut(chunk * g.out_len()).zip(x.par_chunks(chunk * g.in_len())).for_each(|(ys, xs)| {
            let samples = xs.len() / g.in_len();
            blocks::<T>(samples, g, |first, n, col| {
                let ld = n * p;
                for s in 0..n {
                    im2col(&xs[(first + s) * g.in_len()..][..g.in_len()], g, &plan, col, ld, s * p);
                }
                // Scratch slot 1: gemm overwrites it (no accumulation).
                T::with_scratch(1, o * ld, |out| {
                    gemm_into((o, ld, k), (out, Dst::RowMajor), Mat::n(w, k), Mat::n(col, ld), false, par);
                    for s in 0..n {
                        let yb = &mut ys[(first + s) * g.out_len()..][..g.out_len()];
                        for (oc, row) in yb.chunks_exact_mut(p).enumerate() {
                            let bias = b.map_or(T::zero(), |b| b[oc]);
                            let src = &out[oc * ld + s * p..][..p];
                            if relu {
                                row.iter_mut().zip(src).for_each(|(v, &u)| {
                                    v.write((u + bias).max(T::zero()));
                                });
                            } else {
                                row.iter_mut().zip(src).for_each(|(v, &u)| {
                                    v.write(u + bias);
                                });
                            }
                        }
                    }
                });
            });
        });
    };
    // SAFETY: `body` writes every output: the chunks cover all samples, the blocks all of a
    // chunk's samples, and each sample's `o` rows of `p` are written from the gemm result.
    unsafe { filled(g.batch * g.out_len(), body) }
}

/// `Σ v` in eight lanes: a plain `sum()` is one serial chain of adds (floating-point order), which
/// perf showed at ~3% of a VGG step for the bias gradient alone.
fn row_sum<T: Float>(v: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(T::zero(), |a, &x| a + x);
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().fold(rest, |a, &x| a + x)
}

/// `[dW (o·k) | db (o)]` summed over the batch.
fn conv_grad_weight<T: Float>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let plan = Plan::new(g);
    let (chunk, par) = split(g);
    let partial = |(xs, dys): (&[T], &[T])| {
        let mut acc = vec![T::zero(); o * k + o];
        let samples = xs.len() / g.in_len();
        let mut started = false;
        blocks::<T>(samples, g, |first, n, col| {
            let ld = n * p;
            // Scratch slot 1: every element is copied from dy below.
            T::with_scratch(1, o * ld, |dyt| {
                for s in 0..n {
                    im2col(&xs[(first + s) * g.in_len()..][..g.in_len()], g, &plan, col, ld, s * p);
                    let dyb = &dys[(first + s) * g.out_len()..][..g.out_len()];
                    for (oc, row) in dyb.chunks_exact(p).enumerate() {
                        dyt[oc * ld + s * p..][..p].copy_from_slice(row);
                    }
                }
                let (dw, db) = acc.split_at_mut(o * k);
                // dW is accumulated column-major (`[k, o]` in memory): gemm then reads the column
                // matrix (`K·n·P`, the big operand) as it lies and packs `dy` (`o·n·P`) instead;
                // row-major it packed the column matrix (13% of a VGG step in packing).
                gemm_into((o, k, ld), (dw, Dst::ColMajor), Mat::n(dyt, ld), Mat::t(col, ld), started, par);
                started = true;
                for (d, row) in db.iter_mut().zip(dyt.chunks_exact(ld)) {
                    *d += row_sum(row);
                }
            });
        });
        acc
    };
    let parts: Vec<Vec<T>> =
        x.par_chunks(chunk * g.in_len()).zip(dy.par_chunks(chunk * g.out_len())).map(partial).collect();
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![T::zero(); o * k + o]);
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    // Column-major `[k, o]` to the row-major `[o, k]` of the weights.
    let mut out = Vec::with_capacity(o * k + o);
    for oc in 0..o {
        out.extend((0..k).map(|kk| total[kk * o + oc]));
    }
    out.extend_from_slice(&total[o * k..]);
    out
}

fn conv_grad_input<T: Float>(dy: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let plan = Plan::new(g);
    let mut dx = vec![T::zero(); g.batch * g.in_len()];
    let (chunk, par) = split(g);
    dx.par_chunks_mut(chunk * g.in_len()).zip(dy.par_chunks(chunk * g.out_len())).for_each(|(dxs, dys)| {
        let samples = dxs.len() / g.in_len();
        blocks::<T>(samples, g, |first, n, col| {
            let ld = n * p;
            // Scratch slot 1 is copied from dy in full; `col` is overwritten by the gemm.
            T::with_scratch(1, o * ld, |dyt| {
                for s in 0..n {
                    let dyb = &dys[(first + s) * g.out_len()..][..g.out_len()];
                    for (oc, row) in dyb.chunks_exact(p).enumerate() {
                        dyt[oc * ld + s * p..][..p].copy_from_slice(row);
                    }
                }
                gemm_into((k, ld, o), (col, Dst::RowMajor), Mat::t(w, k), Mat::n(dyt, ld), false, par);
            });
            for s in 0..n {
                col2im(&mut *col, g, &plan, &mut dxs[(first + s) * g.in_len()..][..g.in_len()], ld, s * p);
            }
        });
    });
    dx
}

/// The forward node: `(x, w)` or `(x, w, b)`.
#[derive(Debug, Clone, Copy)]
struct Conv2d {
    params: Conv2dParams,
    relu: bool,
}

/// `(x, dy)` → `[dW | db]` flattened; the kernel's height and width.
#[derive(Debug, Clone, Copy)]
struct Conv2dGradWeight {
    params: Conv2dParams,
    kernel: (usize, usize),
}

/// `(dy, w)` → `dx`; the input's height and width (not recoverable from `dy` alone).
#[derive(Debug, Clone, Copy)]
struct Conv2dGradInput {
    params: Conv2dParams,
    h: usize,
    w: usize,
}

fn geometry(lx: &Layout, lw: &Layout, p: Conv2dParams) -> candle_core::Result<Geometry> {
    Geometry::new(lx.shape().dims(), lw.shape().dims(), p).map_err(candle_core::Error::Msg)
}

macro_rules! float_op {
    ($op:expr, $($s:expr),+ ; |$($v:ident),+| $body:expr) => {
        match ($($s),+) {
            ($(CpuStorage::F32($v)),+) => CpuStorage::F32($body),
            ($(CpuStorage::F64($v)),+) => CpuStorage::F64($body),
            _ => return Err(candle_core::Error::Msg(format!("{}: f32 or f64 arguments of one dtype", $op))),
        }
    };
}

fn conv_fwd(
    params: Conv2dParams,
    relu: bool,
    (sx, lx): (&CpuStorage, &Layout),
    (sw, lw): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let g = geometry(lx, lw, params)?;
    let op = "conv2d";
    let mut out = match bias {
        None => {
            float_op!(op, sx, sw; |x, w| conv_forward(contiguous(x, lx, op)?, contiguous(w, lw, op)?, None, &g, false))
        }
        Some((sb, lb)) => {
            if lb.shape().dims() != [g.o] {
                return Err(candle_core::Error::Msg(format!("conv2d: bias {:?} for {} filters", lb.shape(), g.o)));
            }
            float_op!(op, sx, sw, sb; |x, w, b| conv_forward(
                contiguous(x, lx, op)?, contiguous(w, lw, op)?, Some(contiguous(b, lb, op)?), &g, false))
        }
    };
    if relu {
        relu_in_place(&mut out);
    }
    Ok((out, g.out_shape()))
}

/// The gradients `(dx if tracked, dW, db)` of a convolution for the contiguous upstream `dy`.
fn conv_bwd(
    params: Conv2dParams,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    res: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Tensor, Tensor)> {
    let grad = grad.contiguous()?;
    let dy = if relu { grad.apply_op2_no_bwd(res, &ReluBackward)? } else { grad };
    let o = w.dim(0)?;
    let k = w.elem_count() / o.max(1);
    let (_, _, kh, kw) = w.dims4()?;
    let packed = x.apply_op2_no_bwd(&dy, &Conv2dGradWeight { params, kernel: (kh, kw) })?;
    let dw = packed.narrow(0, 0, o * k)?.reshape(w.shape())?;
    let db = packed.narrow(0, o * k, o)?;
    let dx = if x.track_op() {
        let (_, _, h, wd) = x.dims4()?;
        Some(dy.apply_op2_no_bwd(w, &Conv2dGradInput { params, h, w: wd })?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        conv_fwd(self.params, self.relu, (sx, lx), (sw, lw), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = conv_bwd(self.params, self.relu, x, w, res, grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        conv_fwd(self.params, self.relu, (sx, lx), (sw, lw), Some((sb, lb)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = conv_bwd(self.params, self.relu, x, w, res, grad)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

impl CustomOp2 for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "conv2d-grad-weight";
        let (b, o, ho, wo) = lg.shape().dims4()?;
        let (_, c, _, _) = lx.shape().dims4()?;
        let (_, _, h, w) = lx.shape().dims4()?;
        let (kh, kw) = self.kernel;
        let g = Geometry::new(&[b, c, h, w], &[o, c, kh, kw], self.params).map_err(candle_core::Error::Msg)?;
        if (g.ho, g.wo) != (ho, wo) {
            return Err(candle_core::Error::Msg(format!("{op}: output {ho}x{wo} does not fit the input")));
        }
        let out = float_op!(op, sx, sg; |x, dy| conv_grad_weight(contiguous(x, lx, op)?, contiguous(dy, lg, op)?, &g));
        Ok((out, Shape::from(o * g.k() + o)))
    }
}

impl CustomOp2 for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        sg: &CpuStorage,
        lg: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "conv2d-grad-input";
        let (b, _, ho, wo) = lg.shape().dims4()?;
        let (_, c, _, _) = lw.shape().dims4()?;
        let g =
            Geometry::new(&[b, c, self.h, self.w], lw.shape().dims(), self.params).map_err(candle_core::Error::Msg)?;
        if (g.ho, g.wo, g.o) != (ho, wo, lg.shape().dims()[1]) {
            return Err(candle_core::Error::Msg(format!("{op}: gradient {:?} does not fit the forward", lg.shape())));
        }
        let out = float_op!(op, sg, sw; |dy, w| conv_grad_input(contiguous(dy, lg, op)?, contiguous(w, lw, op)?, &g));
        Ok((out, Shape::from((b, c, self.h, self.w))))
    }
}

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// `conv2d(x, w) + b` for `x [batch, C, H, W]`, `w [O, C, kh, kw]`, `b [O]` (NCHW): the fused
/// op on CPU for `f32`/`f64` (see the module docs), [`conv2d_reference`] elsewhere. `name`
/// (the layer) goes into shape errors.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, params: Conv2dParams, name: &str) -> Result<Tensor> {
    conv_op(x, w, b, params, name, false)
}

/// `relu(conv2d(x, w) + b)` as the same single op (ReLU in place on the output; its backward
/// masks `dy` once before both gradient passes).
pub fn conv2d_relu(x: &Tensor, w: &Tensor, b: Option<&Tensor>, params: Conv2dParams, name: &str) -> Result<Tensor> {
    conv_op(x, w, b, params, name, true)
}

fn conv_op(x: &Tensor, w: &Tensor, b: Option<&Tensor>, params: Conv2dParams, name: &str, relu: bool) -> Result<Tensor> {
    let g =
        Geometry::new(x.dims(), w.dims(), params).map_err(|m| Error::Model { what: name.to_string(), message: m })?;
    if let Some(b) = b
        && b.dims() != [g.o]
    {
        return Err(Error::Shape { op: format!("{name}: bias"), expected: vec![g.o], actual: b.dims().to_vec() });
    }
    if !fused(x) || w.dtype() != x.dtype() || b.is_some_and(|b| b.dtype() != x.dtype()) {
        let y = conv2d_reference(x, w, b, params)?;
        return if relu { Ok(y.relu()?) } else { Ok(y) };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let op = Conv2d { params, relu };
    Ok(match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op)?,
        None => x.apply_op2(&w, op)?,
    })
}

/// The composite reference of [`conv2d`]: candle's own `conv2d` plus a broadcast bias.
pub fn conv2d_reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, params: Conv2dParams) -> Result<Tensor> {
    let y = x.conv2d(w, params.padding, params.stride, 1, 1)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
        None => y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every walk that applies to a geometry writes the same column matrix (into a block of
    /// two samples, at the second sample's offset) and scatters the same input gradient.
    #[test]
    fn the_three_walks_agree() {
        let cases = [
            // (c, h, w, kh, kw, stride, pad)
            (2, 32, 32, 3, 3, 1, 1),
            (3, 9, 7, 3, 3, 1, 1),
            (2, 4, 4, 3, 3, 1, 1),
            (2, 2, 2, 3, 3, 1, 1),
            (1, 1, 1, 3, 3, 1, 1),
            (2, 6, 5, 3, 1, 1, 0),
            (2, 5, 1, 3, 3, 1, 1),
            (1, 4, 2, 5, 5, 1, 2),
            (3, 11, 9, 3, 3, 2, 1),
            (2, 7, 7, 2, 2, 3, 1),
            (2, 8, 8, 1, 1, 2, 0),
            (1, 12, 10, 5, 5, 1, 2),
        ];
        for (c, h, w, kh, kw, stride, pad) in cases {
            let g = Geometry::new(&[2, c, h, w], &[3, c, kh, kw], Conv2dParams::new(stride, pad)).unwrap();
            let x: Vec<f64> = (0..g.in_len()).map(|i| (0.37 * i as f64).sin() + 2.0).collect();
            let (p, ld) = (g.p(), 2 * g.p());
            let mut plans = vec![("gather", Plan::Gather(gather_table(&g))), ("rows", Plan::Rows)];
            if Same::of(&g).is_some() {
                plans.push(("same", Plan::Same));
            }
            let mut results = vec![];
            for (name, plan) in &plans {
                let mut col = vec![f64::NAN; g.k() * ld];
                im2col(&x, &g, plan, &mut col, ld, p);
                let written: Vec<f64> = col.chunks_exact(ld).flat_map(|r| r[p..].to_vec()).collect();
                assert!(written.iter().all(|v| v.is_finite()), "{name}: every element written");
                let mut dcol: Vec<f64> = (0..g.k() * ld).map(|i| (1.3 * i as f64).cos()).collect();
                let mut dx = vec![0.5; g.in_len()];
                col2im(&mut dcol, &g, plan, &mut dx, ld, p);
                results.push((*name, written, dx));
            }
            let (_, col0, dx0) = &results[0];
            for (name, col, dx) in &results[1..] {
                assert_eq!(col, col0, "im2col {name} vs gather, {g:?}");
                for (a, b) in dx.iter().zip(dx0) {
                    assert!((a - b).abs() < 1e-12, "col2im {name} vs gather, {g:?}: {a} vs {b}");
                }
            }
        }
    }
}
