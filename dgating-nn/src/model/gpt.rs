//! [`GptConfig`]: a nanoGPT / GPT-2 decoder at any per-block sizes, and its
//! [`Structure`](dgating_core::Structure).
//!
//! Token and position embeddings, then per block `x ← x + attn(ln1(x))`,
//! `x ← x + mlp(ln2(x))` (pre-LayerNorm), causal multi-head self-attention, a tanh-GELU MLP,
//! a final LayerNorm and an output head tied to the token embedding. Each block has its own
//! head count and MLP width, so a pruned model is the same architecture at smaller sizes.
//!
//! Tensor keys ([`GptConfig::key`]; `H·hs` = heads × head size, `M` = MLP width):
//!
//! | key | shape |
//! |---|---|
//! | `wte.weight` | `[vocab, C]` (also the output head) |
//! | `wpe.weight` | `[block_size, C]` |
//! | `blocks.{l}.ln1.{weight,bias}`, `blocks.{l}.ln2.{weight,bias}`, `ln_f.{weight,bias}` | `[C]` |
//! | `blocks.{l}.attn.{q,k,v}.weight` / `.bias` | `[H·hs, C]` / `[H·hs]` |
//! | `blocks.{l}.attn.proj.weight` / `.bias` | `[C, H·hs]` / `[C]` |
//! | `blocks.{l}.mlp.fc.weight` / `.bias` | `[M, C]` / `[M]` |
//! | `blocks.{l}.mlp.proj.weight` / `.bias` | `[C, M]` / `[C]` |
//!
//! Dims: `inputs` (the vocabulary: rows of `wte`; not removable), `positions`, `embd` (the
//! stream; not removable here), and per block `blocks.{l}.heads` — head `h` is the block of
//! `hs` rows `[h·hs, (h+1)·hs)` of q, k, v (weights and biases) and the same block of columns of
//! `attn.proj.weight`, all of it the head's group — and `blocks.{l}.mlp` — neuron `i` is row `i`
//! of `mlp.fc` (weight and bias) and column `i` of `mlp.proj.weight`. Both are *emptiable*: a
//! block without heads (or MLP neurons) keeps its residual path and adds its projection's bias.
//! Gate matrices: `blocks.{l}.attn.gates`, `blocks.{l}.mlp.gates`.

use dgating_core::{Dim, Slice};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::INPUTS;

/// Name of the position dim.
pub const POSITIONS: &str = "positions";
/// Name of the embedding (stream) dim.
pub const EMBD: &str = "embd";
/// Largest vocabulary, context, width or per-block size accepted (guards hostile configs).
pub const MAX_SIZE: usize = 1 << 20;

/// The architecture of a [`Gpt`](crate::model::Gpt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Vocabulary size (rows of `wte`, logits per position).
    pub vocab_size: usize,
    /// Longest context (rows of `wpe`).
    pub block_size: usize,
    /// Width of the residual stream `C`.
    pub n_embd: usize,
    /// Size of one head (`n_embd / n_head` before pruning; pruning keeps it).
    pub head_size: usize,
    /// Heads per block (its length is the number of blocks; 0 = no attention in that block).
    pub heads: Vec<usize>,
    /// MLP width per block (0 = no MLP in that block).
    pub mlp: Vec<usize>,
    /// Each block's heads are groups.
    pub group_heads: bool,
    /// Each block's MLP neurons are groups.
    pub group_mlp: bool,
    /// Which of a head's weights its group (and so its gates and penalty) covers; a removed
    /// head loses all of them either way. Configs written before this field read as
    /// [`HeadGroup::Whole`], which is also left out when written, so that such configs (and
    /// exports) are what they were.
    #[serde(default, skip_serializing_if = "HeadGroup::is_whole")]
    pub head_group: HeadGroup,
}

/// The weights of an attention head that form its group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadGroup {
    /// q, k and v rows (weights and biases) and the output projection's columns. A gate then
    /// scales the head's attention logits by the square of its product as well as its output.
    #[default]
    Whole,
    /// v rows (weight and bias) and the output projection's columns: the gate scales what the
    /// head writes, not how it attends (the head gate of Michel et al., 2019, "Are Sixteen
    /// Heads Really Better than One?"). q and k rows are removed with the head, unpenalized;
    /// a head whose group is zero writes exactly nothing, whatever its attention.
    Output,
}

impl HeadGroup {
    fn is_whole(&self) -> bool {
        *self == HeadGroup::Whole
    }
}

impl GptConfig {
    /// nanoGPT's shape: `n_layer` blocks of `n_head` heads of size `n_embd / n_head`, MLP width
    /// `4·n_embd`, heads and MLP neurons as groups.
    pub fn nano(vocab_size: usize, block_size: usize, n_layer: usize, n_head: usize, n_embd: usize) -> Result<Self> {
        if n_head == 0 || !n_embd.is_multiple_of(n_head) {
            return Err(Error::Config(format!("n_embd ({n_embd}) must be a multiple of n_head ({n_head})")));
        }
        let c = Self {
            vocab_size,
            block_size,
            n_embd,
            head_size: n_embd / n_head,
            heads: vec![n_head; n_layer],
            mlp: vec![4 * n_embd; n_layer],
            group_heads: true,
            group_mlp: true,
            head_group: HeadGroup::default(),
        };
        c.check()?;
        Ok(c)
    }

    /// Rejects zero or absurd sizes and blocks lists of different lengths.
    pub fn check(&self) -> Result<()> {
        let sizes = [self.vocab_size, self.block_size, self.n_embd, self.head_size];
        if sizes.contains(&0) || self.heads.is_empty() || self.heads.len() != self.mlp.len() {
            return Err(Error::Config(format!(
                "GPT sizes must be >= 1 with as many MLP widths as head counts (>= 1 block): {self:?}"
            )));
        }
        let all = sizes.iter().chain(&self.heads).chain(&self.mlp);
        if all.clone().any(|&s| s > MAX_SIZE) || self.heads.iter().any(|&h| h * self.head_size > MAX_SIZE) {
            return Err(Error::Config(format!("GPT sizes must be <= {MAX_SIZE}: {self:?}")));
        }
        Ok(())
    }

    /// Number of blocks.
    pub fn n_layer(&self) -> usize {
        self.heads.len()
    }

    /// The key of `part` of `layer` (e.g. `key("blocks.0.attn.q", "weight")`).
    pub fn key(layer: &str, part: &str) -> String {
        format!("{layer}.{part}")
    }

    /// Prefix of block `l`'s sub-layer `sub` (`ln1`, `attn.q`, `mlp.fc`, ...).
    pub fn block(l: usize, sub: &str) -> String {
        format!("blocks.{l}.{sub}")
    }

    /// Name of block `l`'s head dim.
    pub fn heads_dim(l: usize) -> String {
        format!("blocks.{l}.heads")
    }

    /// Name of block `l`'s MLP dim.
    pub fn mlp_dim(l: usize) -> String {
        format!("blocks.{l}.mlp")
    }

    /// Checkpoint key of the gate matrix of dim `dim` (a head or MLP dim).
    pub fn gates_key(dim: &str) -> String {
        match dim.strip_suffix(".heads") {
            Some(b) => format!("{b}.attn.gates"),
            None => format!("{dim}.gates"),
        }
    }

    pub(crate) fn dims(&self) -> Vec<Dim> {
        let (c, v, p) = (self.n_embd, self.vocab_size, self.block_size);
        let key = Self::key;
        let mut embd = vec![
            Slice::new("wte.weight", [v, c], 1, false),
            Slice::new("wpe.weight", [p, c], 1, false),
            Slice::new("ln_f.weight", [c], 0, false),
            Slice::new("ln_f.bias", [c], 0, false),
        ];
        let mut blocks = vec![];
        for (l, (&h, &m)) in self.heads.iter().zip(&self.mlp).enumerate() {
            let b = |s: &str| Self::block(l, s);
            let hw = h * self.head_size;
            for ln in ["ln1", "ln2"] {
                embd.push(Slice::new(key(&b(ln), "weight"), [c], 0, false));
                embd.push(Slice::new(key(&b(ln), "bias"), [c], 0, false));
            }
            let mut heads = vec![];
            for qkv in ["attn.q", "attn.k", "attn.v"] {
                let group = self.group_heads && (qkv == "attn.v" || self.head_group == HeadGroup::Whole);
                embd.push(Slice::new(key(&b(qkv), "weight"), [hw, c], 1, false));
                heads.push(Slice::new(key(&b(qkv), "weight"), [hw, c], 0, group).with_block(self.head_size));
                heads.push(Slice::new(key(&b(qkv), "bias"), [hw], 0, group).with_block(self.head_size));
            }
            embd.push(Slice::new(key(&b("attn.proj"), "weight"), [c, hw], 0, false));
            embd.push(Slice::new(key(&b("attn.proj"), "bias"), [c], 0, false));
            heads.push(
                Slice::new(key(&b("attn.proj"), "weight"), [c, hw], 1, self.group_heads).with_block(self.head_size),
            );
            embd.push(Slice::new(key(&b("mlp.fc"), "weight"), [m, c], 1, false));
            embd.push(Slice::new(key(&b("mlp.proj"), "weight"), [c, m], 0, false));
            embd.push(Slice::new(key(&b("mlp.proj"), "bias"), [c], 0, false));
            let mlp = vec![
                Slice::new(key(&b("mlp.fc"), "weight"), [m, c], 0, self.group_mlp),
                Slice::new(key(&b("mlp.fc"), "bias"), [m], 0, self.group_mlp),
                Slice::new(key(&b("mlp.proj"), "weight"), [c, m], 1, self.group_mlp),
            ];
            blocks.push(Dim::new(Self::heads_dim(l), h, true, heads).emptiable());
            blocks.push(Dim::new(Self::mlp_dim(l), m, true, mlp).emptiable());
        }
        let mut dims = vec![
            Dim::new(INPUTS, v, false, vec![Slice::new("wte.weight", [v, c], 0, false)]),
            Dim::new(POSITIONS, p, false, vec![Slice::new("wpe.weight", [p, c], 0, false)]),
            Dim::new(EMBD, c, false, embd),
        ];
        dims.extend(blocks);
        dims
    }

    pub(crate) fn resized(&self, size: impl Fn(&str) -> usize) -> Self {
        Self {
            vocab_size: size(INPUTS),
            block_size: size(POSITIONS),
            n_embd: size(EMBD),
            heads: (0..self.n_layer()).map(|l| size(&Self::heads_dim(l))).collect(),
            mlp: (0..self.n_layer()).map(|l| size(&Self::mlp_dim(l))).collect(),
            ..self.clone()
        }
    }

    /// Multiply-adds of one token's forward at full context (`block_size` keys), as FLOPs
    /// (2 per multiply-add): the projections, attention scores and weighted sums, the MLP and
    /// the tied output head.
    pub fn flops_per_token(&self) -> usize {
        let c = self.n_embd;
        let blocks: usize = self
            .heads
            .iter()
            .zip(&self.mlp)
            .map(|(&h, &m)| {
                let hw = h * self.head_size;
                4 * hw * c + 2 * hw * self.block_size + 2 * m * c
            })
            .sum();
        2 * (blocks + c * self.vocab_size)
    }
}
