//! A language-model run directory: `config.json` ([`LmRunConfig`]), `model.safetensors`
//! (every variable, gate matrices included), `tokenizer.json`, `metrics.jsonl`. Written
//! atomically, file by file; [`train_run`] creates or continues one, [`load_run`] reads it.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::GateInit;
use crate::lm::corpus::Corpus;
use crate::lm::tokenizer::{LmTokenizer, TokenizerSpec};
use crate::lm::train::{LmMetrics, LmTrainConfig, train_lm};
use crate::model::{Architecture, Gpt, GptConfig, HeadGroup, Model};
use crate::train::checkpoint::{CHECKPOINT_FORMAT, FORMAT_KEY, atomic_write, load_tensors, save_tensors};

/// `kind` of a language-model run's `config.json`.
pub const LM_RUN_KIND: &str = "dgating-lm-run-v1";
/// File names.
pub const CONFIG_FILE: &str = "config.json";
/// The gated checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// One JSON line per evaluation.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Where the text comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// `moby-dick` or a file path (`None`: an imported model without a corpus).
    pub corpus: Option<String>,
    /// How the tokenizer was built (informational once `tokenizer.json` exists).
    pub tokenizer: TokenizerSpec,
    /// The last share of the tokens is the validation text.
    pub val_fraction: f64,
}

/// `config.json` of a language-model run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmRunConfig {
    /// [`LM_RUN_KIND`].
    pub kind: String,
    /// The model (tagged `"type": "gpt"`).
    pub architecture: Architecture,
    /// `D` of the stored gates (`None`: ungated).
    pub depth: Option<usize>,
    /// The text.
    pub text: TextSpec,
    /// The training settings of the last `train` call.
    pub train: LmTrainConfig,
    /// Steps done in total.
    pub steps_done: usize,
    /// Where the weights came from (`init`, `import-gpt2 DIR`).
    pub origin: String,
}

impl LmRunConfig {
    /// The GPT description.
    pub fn gpt(&self) -> Result<&GptConfig> {
        match &self.architecture {
            Architecture::Gpt(c) => Ok(c),
            other => Err(Error::Config(format!("not a language model: {}", serde_json::json!(other)["type"]))),
        }
    }
}

/// Tokenized text: all tokens and the split point.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Training tokens.
    pub train: Vec<u32>,
    /// Validation tokens.
    pub val: Vec<u32>,
}

/// Tokenizes `corpus` and splits it by position.
pub fn tokenize(tokenizer: &LmTokenizer, corpus: &Corpus, val_fraction: f64) -> Result<Tokens> {
    let ids = tokenizer.encode(&corpus.text)?;
    let (train, val) = Corpus::split_tokens(&ids, val_fraction)?;
    Ok(Tokens { train: train.to_vec(), val: val.to_vec() })
}

/// Writes `model.safetensors` (every variable, gates included), `tokenizer.json` (if any),
/// then `config.json`.
pub fn save_run(dir: &Path, config: &LmRunConfig, model: &Gpt, tokenizer: Option<&LmTokenizer>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let store = model.params()?;
    let tensors: Vec<(String, Tensor)> = store
        .iter()
        .map(|p| Ok((p.name.clone(), p.var.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let meta = HashMap::from([(FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string())]);
    save_tensors(&dir.join(MODEL_FILE), &tensors, meta)?;
    if let Some(t) = tokenizer {
        t.save(&dir.join(TOKENIZER_FILE))?;
    }
    let json = serde_json::to_vec_pretty(config).map_err(|e| Error::Json { what: "run config".into(), source: e })?;
    atomic_write(&dir.join(CONFIG_FILE), &json)
}

/// Reads a run: its config, the model (gated as stored) on `device` and the tokenizer (`None`
/// when the run has no `tokenizer.json`, e.g. an imported model without one).
pub fn load_run(dir: &Path, device: &Device) -> Result<(LmRunConfig, Gpt, Option<LmTokenizer>)> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let config: LmRunConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::RunDir { dir: dir.into(), message: format!("not a language-model run: {e}") })?;
    if config.kind != LM_RUN_KIND {
        return Err(Error::RunDir {
            dir: dir.into(),
            message: format!("kind `{}` is not `{LM_RUN_KIND}`", config.kind),
        });
    }
    let gpt = config.gpt()?.clone();
    let model = Gpt::new(gpt, config.depth, GateInit::Ones, 0, DType::F32, device)?;
    let (tensors, _) = load_tensors(&dir.join(MODEL_FILE), device)?;
    let store = model.params()?;
    for p in store.iter() {
        let t = tensors.get(&p.name).ok_or_else(|| Error::Checkpoint {
            path: dir.join(MODEL_FILE),
            message: format!("missing tensor `{}`", p.name),
        })?;
        if t.dims() != p.var.dims() {
            return Err(Error::Checkpoint {
                path: dir.join(MODEL_FILE),
                message: format!("`{}` has shape {:?}, the config says {:?}", p.name, t.dims(), p.var.dims()),
            });
        }
        p.var.set(&t.to_dtype(DType::F32)?)?;
    }
    if let Some(k) = tensors.keys().find(|k| store.get(k).is_none()) {
        return Err(Error::Checkpoint { path: dir.join(MODEL_FILE), message: format!("unknown tensor `{k}`") });
    }
    let tokenizer = read_tokenizer(dir, model.config().vocab_size)?;
    Ok((config, model, tokenizer))
}

/// `dir/tokenizer.json` if present, checked against the model's vocabulary.
pub fn read_tokenizer(dir: &Path, model_vocab: usize) -> Result<Option<LmTokenizer>> {
    let path = dir.join(TOKENIZER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let tokenizer = LmTokenizer::from_file(&path)?;
    tokenizer.check_model_vocab(model_vocab)?;
    Ok(Some(tokenizer))
}

/// Appends one evaluation to `metrics.jsonl`.
pub fn append_metrics(dir: &Path, m: &LmMetrics) -> Result<()> {
    let path = dir.join(METRICS_FILE);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    let line = serde_json::to_string(m).map_err(|e| Error::Json { what: "metrics".into(), source: e })?;
    writeln!(f, "{line}").map_err(|e| Error::io(&path, e))
}

/// What a new run is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// Blocks.
    pub n_layer: usize,
    /// Heads per block.
    pub n_head: usize,
    /// Stream width.
    pub n_embd: usize,
    /// Context.
    pub block_size: usize,
    /// Each block's heads are gated groups.
    pub gate_heads: bool,
    /// Each block's MLP neurons are gated groups (with `gate_heads` false: only the MLP).
    pub gate_mlp: bool,
    /// Which of a head's weights its group covers.
    #[serde(default)]
    pub head_group: HeadGroup,
    /// The text.
    pub text: TextSpec,
}

/// Trains a new run into `dir` (which must not hold a run), or continues the run in `dir`
/// (`new = None`) for `cfg.steps` more steps with fresh optimizer state. Returns the
/// evaluations; `on_eval` sees each one as it happens.
pub fn train_run(
    dir: &Path,
    new: Option<&NewRun>,
    cfg: &LmTrainConfig,
    device: &Device,
    mut on_eval: impl FnMut(&LmMetrics) -> Result<bool>,
) -> Result<(LmRunConfig, Vec<LmMetrics>)> {
    cfg.check()?;
    let (mut config, model, tokenizer, tokens) = match new {
        Some(n) => {
            if dir.join(CONFIG_FILE).exists() {
                return Err(Error::RunDir {
                    dir: dir.into(),
                    message: "already holds a run; continue it with --resume or choose a new directory".into(),
                });
            }
            if cfg.depth.is_some() && !n.gate_heads && !n.gate_mlp {
                return Err(Error::Config(
                    "a gated run needs heads or MLP neurons as groups; train without gates for a dense model".into(),
                ));
            }
            let corpus = Corpus::load(n.text.corpus.as_deref().unwrap_or(crate::lm::MOBY_DICK))?;
            let tokenizer = LmTokenizer::build(&n.text.tokenizer, &corpus.text)?;
            let mut gpt = GptConfig::nano(tokenizer.vocab_size(), n.block_size, n.n_layer, n.n_head, n.n_embd)?;
            (gpt.group_heads, gpt.group_mlp, gpt.head_group) = (n.gate_heads, n.gate_mlp, n.head_group);
            let model = Gpt::new(gpt.clone(), cfg.depth, cfg.gate_init, cfg.seed, DType::F32, device)?;
            let tokens = tokenize(&tokenizer, &corpus, n.text.val_fraction)?;
            let config = LmRunConfig {
                kind: LM_RUN_KIND.into(),
                architecture: Architecture::Gpt(gpt),
                depth: cfg.depth,
                text: n.text.clone(),
                train: cfg.clone(),
                steps_done: 0,
                origin: "init".into(),
            };
            (config, model, tokenizer, tokens)
        }
        None => {
            let (config, model, tokenizer) = load_run(dir, device)?;
            let tokenizer = tokenizer.ok_or_else(|| no_tokenizer(dir))?;
            if config.depth != cfg.depth && cfg.depth.is_some() {
                return Err(Error::Config(format!(
                    "the run has D = {:?}; continuing it with D = {:?} is not supported",
                    config.depth, cfg.depth
                )));
            }
            let Some(corpus) = &config.text.corpus else {
                return Err(Error::Config("the run has no corpus to train on; pass one with --corpus".into()));
            };
            let tokens = tokenize(&tokenizer, &Corpus::load(corpus)?, config.text.val_fraction)?;
            (config, model, tokenizer, tokens)
        }
    };
    let cfg = LmTrainConfig { depth: config.depth, ..cfg.clone() };
    let history = train_lm(&model, &cfg, &tokens.train, &tokens.val, |m| {
        let m = LmMetrics { step: m.step + config.steps_done, ..m.clone() };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        append_metrics(dir, &m)?;
        on_eval(&m)
    })?;
    config.steps_done += history.last().map_or(0, |m| m.step);
    config.train = cfg;
    save_run(dir, &config, &model, Some(&tokenizer))?;
    Ok((config, history))
}

fn no_tokenizer(dir: &Path) -> Error {
    Error::RunDir { dir: dir.into(), message: format!("has no {TOKENIZER_FILE}: text cannot be tokenized for it") }
}

/// The tokens of a run's own validation text (re-tokenized from its corpus).
pub fn run_tokens(config: &LmRunConfig, tokenizer: Option<&LmTokenizer>) -> Result<Tokens> {
    let Some(tokenizer) = tokenizer else {
        return Err(Error::Config("the run has no tokenizer.json: its text cannot be tokenized".into()));
    };
    let Some(corpus) = &config.text.corpus else {
        return Err(Error::Config("the run records no corpus; give the text to score explicitly".into()));
    };
    tokenize(tokenizer, &Corpus::load(corpus)?, config.text.val_fraction)
}

/// The ids `[n]` as a `[1, n]` tensor.
pub fn ids_tensor(ids: &[u32], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(ids.to_vec(), (1, ids.len()), device)?)
}

/// Effective tensors of `model`, detached (for generation and scoring without gradients).
pub fn detached(model: &Gpt) -> Result<BTreeMap<String, Tensor>> {
    model.effective()?.into_iter().map(|(k, t)| Ok((k, t.detach()))).collect()
}

/// The language-model description inside `architecture`, or an error for other models.
pub fn language_model(architecture: &Architecture) -> Result<&GptConfig> {
    match architecture {
        Architecture::Gpt(c) => Ok(c),
        other => Err(Error::Config(format!("not a language model: {}", serde_json::json!(other)["type"]))),
    }
}
