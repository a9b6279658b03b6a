//! The floating-point element type the core math is generic over (`f32` or `f64`).

use num_traits::{Float, FromPrimitive, ToPrimitive};

/// A floating-point element: `f32` for model weights, `f64` for reference computations.
pub trait Scalar:
    Float + FromPrimitive + ToPrimitive + std::iter::Sum + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// Converts from `f64`, rounding to nearest.
    fn of(v: f64) -> Self {
        <Self as FromPrimitive>::from_f64(v).unwrap_or_else(Self::nan)
    }
    /// Widens to `f64`.
    fn f64(self) -> f64 {
        ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
}

impl Scalar for f32 {}
impl Scalar for f64 {}

/// Sum of squares of `xs`, accumulated in `f64` so `f32` weights lose no precision.
pub(crate) fn sum_sq<T: Scalar>(xs: &[T]) -> f64 {
    xs.iter()
        .map(|x| {
            let v = x.f64();
            v * v
        })
        .sum()
}
