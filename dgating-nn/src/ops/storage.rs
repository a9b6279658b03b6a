//! Access to the contiguous data behind a CPU storage and its layout, shared by the fused ops.

use candle_core::{DType, Layout};

/// The elements `layout` addresses in `data`, which must be contiguous (the fused ops make
/// their inputs contiguous before calling into candle).
pub(crate) fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &'static str) -> candle_core::Result<&'a [T]> {
    layout.contiguous_offsets().map(|(s, e)| &data[s..e]).ok_or(candle_core::Error::RequiresContiguous { op })
}

/// Mutable [`contiguous`].
pub(crate) fn contiguous_mut<'a, T>(
    data: &'a mut [T],
    layout: &Layout,
    op: &'static str,
) -> candle_core::Result<&'a mut [T]> {
    match layout.contiguous_offsets() {
        Some((s, e)) => Ok(&mut data[s..e]),
        None => Err(candle_core::Error::RequiresContiguous { op }),
    }
}

/// The element types the fused CPU kernels are written for (`f32`, `f64`).
pub(crate) trait Float:
    'static
    + Copy
    + Send
    + Sync
    + num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + std::ops::AddAssign
    + std::iter::Sum
{
    /// Runs `f` on a buffer of `len` elements from this thread's scratch slot `slot` (0 or 1)
    /// whose **contents are unspecified** (left from an earlier use, or zeros): for buffers the
    /// kernel overwrites completely, so that a hot loop neither allocates nor zero-fills them
    /// on every call (fresh zeroed buffers were ~20% of a conv training step).
    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

type Slots<T> = [std::cell::RefCell<Vec<T>>; 2];

thread_local! {
    static SCRATCH_F32: Slots<f32> = const { [std::cell::RefCell::new(Vec::new()), std::cell::RefCell::new(Vec::new())] };
    static SCRATCH_F64: Slots<f64> = const { [std::cell::RefCell::new(Vec::new()), std::cell::RefCell::new(Vec::new())] };
}

/// The buffer is taken out of its slot while `f` runs, so a re-entrant call on the same thread
/// (rayon may run another task while this one waits inside a parallel gemm) finds the slot
/// empty and allocates its own instead of aliasing this one.
fn scratch<T: Copy + num_traits::Zero, R>(
    key: &'static std::thread::LocalKey<Slots<T>>,
    slot: usize,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = key.with(|s| std::mem::take(&mut *s[slot].borrow_mut()));
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    let r = f(&mut buf[..len]);
    key.with(|s| {
        let mut kept = s[slot].borrow_mut();
        if kept.capacity() < buf.capacity() {
            *kept = buf;
        }
    });
    r
}

impl Float for f32 {
    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        scratch(&SCRATCH_F32, slot, len, f)
    }
}
impl Float for f64 {
    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        scratch(&SCRATCH_F64, slot, len, f)
    }
}

/// A vector of `len` elements written by `fill`; spares the zero-fill of an output that is
/// overwritten anyway.
///
/// # Safety
/// `fill` must initialize every element of the uninitialized slice it is given.
pub(crate) unsafe fn filled<T>(len: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>])) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees `fill` initialized all `len` elements; capacity >= len.
    unsafe { v.set_len(len) };
    v
}

/// The error of a fused op given a dtype its CPU kernel does not handle.
pub(crate) fn unsupported(op: &'static str) -> candle_core::Error {
    candle_core::Error::UnsupportedDTypeForOp(DType::BF16, op)
}
