//! The matrix products of one MLP training step, timed alone: how much of a step is GEMM, and
//! how fast candle's GEMM (the `gemm` crate) runs at these shapes. The PyTorch twin is
//! `dgating-bench/reference/torch_gemm_shapes.py`; docs/PERFORMANCE.md compares the two.
//!
//! ```sh
//! cargo run --release -p dgating-bench --example gemm_shapes -- lenet-300-100 128
//! ```
//!
//! Per step and layer `[in → out]` at batch `B`: forward `x wᵀ` (B×in·in×out), weight
//! gradient `dyᵀ x` (out×B·B×in), and input gradient `dy w` (B×out·out×in) for every layer but
//! the first (its input is the data). Prints one JSON line: median milliseconds of all these
//! products together over 40 repetitions, and the implied GFLOP/s.

use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "lenet-300-100".into());
    let batch: usize = args.next().map_or(Ok(128), |b| b.parse())?;
    let widths: &[usize] = match model.as_str() {
        "lenet-300-100" => &[784, 300, 100, 10],
        "mlp-512" => &[784, 512, 512, 10],
        other => return Err(format!("unknown model {other} (lenet-300-100 | mlp-512)").into()),
    };
    let dev = Device::Cpu;
    let mut products: Vec<(Tensor, Tensor)> = Vec::new();
    let mut flops = 0usize;
    for (l, w) in widths.windows(2).enumerate() {
        let (inp, out) = (w[0], w[1]);
        let x = Tensor::randn(0f32, 1.0, (batch, inp), &dev)?;
        let wt = Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
        let dy = Tensor::randn(0f32, 1.0, (batch, out), &dev)?;
        products.push((x.clone(), wt.t()?)); // forward
        products.push((dy.t()?, x)); // weight gradient, [out, in]
        flops += 2 * 2 * batch * inp * out;
        if l > 0 {
            products.push((dy, wt)); // input gradient
            flops += 2 * batch * inp * out;
        }
    }
    let run = || -> candle_core::Result<()> {
        for (a, b) in &products {
            a.matmul(b)?;
        }
        Ok(())
    };
    for _ in 0..5 {
        run()?;
    }
    let mut ms = Vec::with_capacity(40);
    for _ in 0..40 {
        let t = Instant::now();
        run()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let median = (ms[19] + ms[20]) / 2.0;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    println!(
        "{{\"impl\":\"candle-gemm\",\"model\":\"{model}\",\"batch\":{batch},\"threads\":\"{threads}\",\"median_ms\":{median:.4},\"gflops\":{:.1}}}",
        flops as f64 / median / 1e6
    );
    Ok(())
}
