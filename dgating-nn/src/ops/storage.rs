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
}
impl Float for f32 {}
impl Float for f64 {}

/// The error of a fused op given a dtype its CPU kernel does not handle.
pub(crate) fn unsupported(op: &'static str) -> candle_core::Error {
    candle_core::Error::UnsupportedDTypeForOp(DType::BF16, op)
}
