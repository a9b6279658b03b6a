//! Fused CPU ops with explicit backward. Each keeps a composite reference (plain candle ops)
//! used on other devices and checked against the fused version in tests.

pub mod attention;
pub mod fused_update;
pub mod gate_product;
pub mod gelu;
pub mod group_scale;
pub mod layer_norm;
pub mod linear;
mod small_linear;
mod storage;

pub use attention::{
    causal_attention, causal_attention_reference, causal_mask, causal_softmax, causal_softmax_reference, softmax_last,
};
pub use gate_product::{gate_product, gate_product_reference};
pub use gelu::{gelu, gelu_reference};
pub use group_scale::{GroupAxis, scale_cols_relu, scale_groups, scale_groups_reference};
pub use layer_norm::{LAYER_NORM_EPS, layer_norm, layer_norm_reference};
pub use linear::{linear, linear_forward_f32, linear_reference, linear_relu, relu};
pub mod batch_norm;
pub mod conv;
pub mod pool;

pub use batch_norm::{BatchStats, batch_norm_eval, batch_norm_train, batch_norm_train_reference, channel_affine};
pub use conv::{Conv2dParams, conv2d, conv2d_reference, conv2d_relu};
pub use pool::{avg_pool2d, avg_pool2d_reference, flatten, global_avg_pool, max_pool2d, max_pool2d_reference};
