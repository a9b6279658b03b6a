//! [`LinearProblem`]: a linear or logistic regression loss on a fixed design matrix.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::layout::GroupLayout;

/// The data-fit term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// `L = (1/2n) Σ_i (x_iᵀβ + b − y_i)²`.
    Squared,
    /// `L = (1/n) Σ_i [log(1 + e^{z_i}) − y_i z_i]`, `z_i = x_iᵀβ + b`, `y_i ∈ {0, 1}`.
    Logistic,
}

/// `n` samples of `p` features (row-major `x`), targets `y`, a loss and an optional
/// unpenalized intercept `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProblem {
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
    p: usize,
    loss: Loss,
    fit_intercept: bool,
}

impl LinearProblem {
    /// Validates shapes, finiteness and (for logistic loss) `y ∈ {0, 1}`.
    pub fn new(x: Vec<f64>, y: Vec<f64>, p: usize, loss: Loss, fit_intercept: bool) -> Result<Self> {
        let n = y.len();
        if n == 0 || p == 0 {
            return Err(Error::InvalidParameter {
                what: "problem size",
                value: (n * p) as f64,
                reason: "need n >= 1 samples and p >= 1 features",
            });
        }
        check_len(|| format!("design matrix [{n}, {p}]"), n * p, x.len())?;
        if let Some(v) = x.iter().chain(&y).find(|v| !v.is_finite()) {
            return Err(Error::InvalidParameter {
                what: "data value",
                value: *v,
                reason: "design and targets must be finite",
            });
        }
        if loss == Loss::Logistic
            && let Some(v) = y.iter().find(|&&v| v != 0.0 && v != 1.0)
        {
            return Err(Error::InvalidParameter { what: "logistic label", value: *v, reason: "must be 0 or 1" });
        }
        Ok(Self { x, y, n, p, loss, fit_intercept })
    }

    /// Number of samples.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of features.
    pub fn p(&self) -> usize {
        self.p
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Whether the model has an intercept.
    pub fn fit_intercept(&self) -> bool {
        self.fit_intercept
    }

    /// Row-major design matrix.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// Targets.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Checks that `layout` describes this problem's coefficient vector (one member of `p`).
    pub fn check_layout(&self, layout: &GroupLayout) -> Result<()> {
        check_len(|| "coefficient layout: member tensors".into(), 1, layout.members().len())?;
        check_len(|| "coefficient layout: elements".into(), self.p, layout.members()[0].numel())
    }

    /// `x β + b` for every sample.
    pub fn predict(&self, beta: &[f64], intercept: f64) -> Vec<f64> {
        self.x
            .chunks_exact(self.p)
            .map(|row| row.iter().zip(beta).map(|(a, b)| a * b).sum::<f64>() + intercept)
            .collect()
    }

    /// The loss value, `∂L/∂β` and `∂L/∂b` (0 when there is no intercept).
    pub fn loss_and_grad(&self, beta: &[f64], intercept: f64) -> Result<(f64, Vec<f64>, f64)> {
        check_len(|| "coefficients".into(), self.p, beta.len())?;
        let b = if self.fit_intercept { intercept } else { 0.0 };
        let z = self.predict(beta, b);
        let inv_n = 1.0 / self.n as f64;
        let (loss, resid): (f64, Vec<f64>) = match self.loss {
            Loss::Squared => {
                let r: Vec<f64> = z.iter().zip(&self.y).map(|(z, y)| z - y).collect();
                (0.5 * inv_n * r.iter().map(|v| v * v).sum::<f64>(), r)
            }
            Loss::Logistic => {
                let l = z.iter().zip(&self.y).map(|(&z, &y)| softplus(z) - y * z).sum::<f64>() * inv_n;
                (l, z.iter().zip(&self.y).map(|(&z, &y)| sigmoid(z) - y).collect())
            }
        };
        let mut grad = vec![0.0; self.p];
        for (row, r) in self.x.chunks_exact(self.p).zip(&resid) {
            for (g, a) in grad.iter_mut().zip(row) {
                *g += a * r;
            }
        }
        grad.iter_mut().for_each(|g| *g *= inv_n);
        let grad_b = if self.fit_intercept { resid.iter().sum::<f64>() * inv_n } else { 0.0 };
        Ok((loss, grad, grad_b))
    }

    /// A Lipschitz constant of `∇L` in `(β, b)`: `σ_max(X̃)²/n` (×¼ for logistic), with `X̃`
    /// the design plus a ones column when there is an intercept. Power iteration, 200 steps
    /// then ×1.01 so that it stays an upper bound.
    pub fn lipschitz(&self) -> f64 {
        let cols = self.p + usize::from(self.fit_intercept);
        let mut v = vec![1.0 / (cols as f64).sqrt(); cols];
        let mut sigma2 = 0.0;
        for _ in 0..200 {
            // u = X̃ v, w = X̃ᵀ u
            let u: Vec<f64> = self
                .x
                .chunks_exact(self.p)
                .map(|row| {
                    row.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>()
                        + if self.fit_intercept { v[self.p] } else { 0.0 }
                })
                .collect();
            let mut w = vec![0.0; cols];
            for (row, ui) in self.x.chunks_exact(self.p).zip(&u) {
                for (wk, a) in w.iter_mut().zip(row) {
                    *wk += a * ui;
                }
                if self.fit_intercept {
                    w[self.p] += ui;
                }
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            sigma2 = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        let scale = match self.loss {
            Loss::Squared => 1.0,
            Loss::Logistic => 0.25,
        };
        1.01 * scale * sigma2 / self.n as f64
    }

    /// The intercept-only fit (`β = 0`): mean of `y` (squared) or its log-odds (logistic).
    pub fn null_intercept(&self) -> f64 {
        if !self.fit_intercept {
            return 0.0;
        }
        let mean = self.y.iter().sum::<f64>() / self.n as f64;
        match self.loss {
            Loss::Squared => mean,
            Loss::Logistic => {
                let m = mean.clamp(1e-12, 1.0 - 1e-12);
                (m / (1.0 - m)).ln()
            }
        }
    }

    /// `λ_max = max_j ||∇_j L(0, b₀)||`: the smallest `λ` at which the group lasso (`D = 2`)
    /// solution is all zero. A natural unit for choosing `λ`.
    pub fn lambda_max(&self, layout: &GroupLayout) -> Result<f64> {
        self.check_layout(layout)?;
        let (_, g, _) = self.loss_and_grad(&vec![0.0; self.p], self.null_intercept())?;
        Ok(layout.group_norms(&[&g])?.into_iter().fold(0.0, f64::max))
    }
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(problem: &LinearProblem) {
        let beta = [0.3, -0.7, 0.2];
        let b = 0.4;
        let (_, g, gb) = problem.loss_and_grad(&beta, b).unwrap();
        let h = 1e-6;
        for k in 0..3 {
            let mut bp = beta;
            let mut bm = beta;
            bp[k] += h;
            bm[k] -= h;
            let fd = (problem.loss_and_grad(&bp, b).unwrap().0 - problem.loss_and_grad(&bm, b).unwrap().0) / (2.0 * h);
            assert!((fd - g[k]).abs() < 1e-8, "feature {k}: {fd} vs {}", g[k]);
        }
        let fd = (problem.loss_and_grad(&beta, b + h).unwrap().0 - problem.loss_and_grad(&beta, b - h).unwrap().0)
            / (2.0 * h);
        assert!((fd - gb).abs() < 1e-8);
    }

    fn data() -> (Vec<f64>, Vec<f64>) {
        let x = vec![1.0, 0.5, -1.0, 0.2, -0.3, 2.0, -1.5, 1.0, 0.0, 0.7, 0.7, -0.7];
        (x, vec![1.0, 0.0, 1.0, 0.0])
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (x, y) = data();
        fd_check(&LinearProblem::new(x.clone(), y.clone(), 3, Loss::Squared, true).unwrap());
        fd_check(&LinearProblem::new(x, y, 3, Loss::Logistic, true).unwrap());
    }

    #[test]
    fn invalid_problems_are_errors() {
        let (x, y) = data();
        assert!(LinearProblem::new(x.clone(), y.clone(), 4, Loss::Squared, false).is_err());
        assert!(LinearProblem::new(x.clone(), vec![2.0, 0.0, 1.0, 0.0], 3, Loss::Logistic, false).is_err());
        let mut bad = x;
        bad[3] = f64::NAN;
        assert!(LinearProblem::new(bad, y, 3, Loss::Squared, false).is_err());
        assert!(LinearProblem::new(vec![], vec![], 3, Loss::Squared, false).is_err());
    }
}
