//! Fused CPU ops with explicit backward. Each keeps a composite reference (plain candle ops)
//! used on other devices and checked against the fused version in tests.

pub mod fused_update;
pub mod gate_product;
pub mod group_scale;
pub mod linear;
mod small_linear;
mod storage;

pub use gate_product::{gate_product, gate_product_reference};
pub use group_scale::{GroupAxis, scale_cols_relu, scale_groups, scale_groups_reference};
pub use linear::{linear, linear_forward_f32, linear_reference, linear_relu, relu};
