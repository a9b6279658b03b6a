//! `dgating lm train|prune|generate|score|import-gpt2|export-gpt2`: thin wrappers over
//! `dgating_nn::lm` and `dgating_prune::language`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use dgating_nn::GateInit;
use dgating_nn::lm::gpt2::import_gpt2;
use dgating_nn::lm::gpt2_export::write_gpt2_dir;
use dgating_nn::lm::run::{NewRun, TextSpec, language_model, train_run};
use dgating_nn::lm::{GateOptim, LmMetrics, LmTrainConfig, Sampling, TokenizerSpec, generate, score_tokens};
use dgating_nn::model::HeadGroup;
use dgating_prune::{LmPruneReport, load_lm_on, prune_lm_run_on};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{json_line, sizes};

type Res = Result<(), Box<dyn std::error::Error>>;

/// `dgating lm ...`.
#[derive(Debug, Args)]
pub struct LmArgs {
    #[command(subcommand)]
    command: LmCommand,
}

#[derive(Debug, Subcommand)]
enum LmCommand {
    /// Train a gated GPT on a corpus (default: the collapse recipe), or continue a run.
    Train(Box<LmTrainArgs>),
    /// Remove the collapsed heads and MLP neurons of a run and export the smaller model.
    Prune(LmPruneArgs),
    /// Continue a prompt with a run or a compacted model.
    Generate(GenerateArgs),
    /// Mean next-token NLL and perplexity of a text (or token ids).
    Score(ScoreArgs),
    /// Turn a transformers GPT-2 directory into a gated run (function-preserving gates).
    #[command(name = "import-gpt2")]
    ImportGpt2(ImportArgs),
    /// Write a run or a compacted model as a transformers GPT-2 directory (pruned heads as
    /// `pruned_heads`, loadable by transformers 4.x).
    #[command(name = "export-gpt2")]
    ExportGpt2(ExportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GateGroupsArg {
    /// Heads and MLP neurons.
    All,
    /// Only the heads (the MLP is an ordinary dense layer without a penalty).
    Heads,
    /// Only the MLP neurons.
    Mlp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HeadGroupArg {
    /// q, k, v and the output projection: the gates also scale the head's attention logits.
    Whole,
    /// v and the output projection: the gates scale what the head writes, not how it attends
    /// (q and k leave with the head).
    Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GateOptimArg {
    /// Adam for weights and omegas (decoupled decay), SGD + momentum at a constant rate for the
    /// gates.
    Recipe,
    /// AdamW for everything.
    Adam,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GateInitArg {
    Balanced,
    Ones,
}

/// Arguments of `dgating lm train`.
#[derive(Debug, Args)]
pub struct LmTrainArgs {
    /// New run directory.
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory (an earlier or imported run) for --steps more steps.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Text: `moby-dick` (built in) or a UTF-8 file.
    #[arg(long, default_value = "moby-dick", conflicts_with = "resume")]
    corpus: String,
    /// `char`, `bpe` (byte-level, trained on the corpus to --vocab-size), a tokenizer.json
    /// file, or `gpt2:VOCAB.json,MERGES.txt`.
    #[arg(long, default_value = "char", conflicts_with = "resume")]
    tokenizer: String,
    /// Vocabulary size of a trained BPE.
    #[arg(long, default_value_t = 512, conflicts_with = "resume")]
    vocab_size: usize,
    /// Share of the text (its end) held out for validation.
    #[arg(long, default_value_t = 0.1, conflicts_with = "resume")]
    val_fraction: f64,
    #[arg(long, default_value_t = 4, conflicts_with = "resume")]
    n_layer: usize,
    #[arg(long, default_value_t = 8, conflicts_with = "resume")]
    n_head: usize,
    #[arg(long, default_value_t = 256, conflicts_with = "resume")]
    n_embd: usize,
    #[arg(long, default_value_t = 64, conflicts_with = "resume")]
    block_size: usize,
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Adam learning rate (weights and omegas; warm-up, then cosine to 10%).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Gate depth D.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Train without gates (the dense reference).
    #[arg(long)]
    dense: bool,
    /// Penalty strength lambda (weight decay 2*lambda/D on the gate factors).
    #[arg(long, default_value_t = 0.03)]
    lambda: f64,
    /// Which groups of a new run are gated (and penalized); a resumed run keeps its own.
    #[arg(long, value_enum, default_value_t = GateGroupsArg::Heads, conflicts_with = "resume")]
    gate: GateGroupsArg,
    /// Share of the steps trained dense (gates fixed, no penalty) before the gates start to
    /// move: gating a partly trained model is what removes heads cheaply.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    gate_from: f64,
    /// Share of the steps after which the groups below --cut-threshold are zeroed for good, the
    /// gates fixed and the penalty stopped; the rest trains the smaller model (1: no cut).
    #[arg(long, default_value_t = 7.0 / 15.0)]
    cut_at: f64,
    /// The cut removes groups at most this share of the largest group of their kind (heads
    /// or MLP neurons) over all blocks.
    #[arg(long, default_value_t = 0.03)]
    cut_threshold: f64,
    /// Which of a head's weights its gates cover in a new run.
    #[arg(long, value_enum, default_value_t = HeadGroupArg::Whole, conflicts_with = "resume")]
    head_group: HeadGroupArg,
    #[arg(long, value_enum, default_value_t = GateOptimArg::Recipe)]
    gate_optim: GateOptimArg,
    /// SGD rate of the gates (constant, see --gate-decay-from).
    #[arg(long, default_value_t = 0.1)]
    gate_lr: f64,
    #[arg(long, default_value_t = 0.9)]
    gate_momentum: f64,
    /// Share of the steps after which the gates' rate follows a cosine to 0 (1: constant to
    /// the end).
    #[arg(long, default_value_t = 1.0)]
    gate_decay_from: f64,
    #[arg(long, value_enum, default_value_t = GateInitArg::Ones)]
    gate_init: GateInitArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Validation windows of block_size tokens per evaluation.
    #[arg(long, default_value_t = 64)]
    eval_windows: usize,
    /// One JSON object per evaluation and a summary, instead of text.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Arguments of `dgating lm prune`.
#[derive(Debug, Args)]
pub struct LmPruneArgs {
    /// Run directory (from `dgating lm train` or `import-gpt2`).
    run_dir: PathBuf,
    /// Output directory: new or empty.
    #[arg(long)]
    out: PathBuf,
    /// Absolute group-norm threshold (replaces the default read-out; see `dgating prune`).
    #[arg(long)]
    threshold_abs: Option<f64>,
    /// Threshold relative to the largest norm of each gate set.
    #[arg(long)]
    threshold_rel: Option<f64>,
    /// Gap factor of the gap rule.
    #[arg(long)]
    gap_factor: Option<f64>,
    #[arg(long)]
    force: bool,
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Arguments of `dgating lm generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A run or a compacted model directory.
    model_dir: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Arguments of `dgating lm score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A run or a compacted model directory.
    model_dir: PathBuf,
    /// A UTF-8 text file (default: a run's own validation text).
    file: Option<PathBuf>,
    /// A file of token ids (JSON array, or integers separated by whitespace or commas).
    #[arg(long, conflicts_with = "file")]
    token_ids: Option<PathBuf>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Arguments of `dgating lm import-gpt2`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// transformers GPT-2 directory (config.json + model.safetensors; tokenizer.json or
    /// vocab.json + merges.txt if present).
    hf_dir: PathBuf,
    /// New run directory.
    #[arg(long)]
    out: PathBuf,
    /// Gate depth D of the function-preserving gates.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Import without gates.
    #[arg(long)]
    no_gates: bool,
    /// Corpus later `lm train --resume` fine-tunes on (`moby-dick` or a file).
    #[arg(long)]
    corpus: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Arguments of `dgating lm export-gpt2`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A language-model run or a compacted export (`dgating lm prune --out`).
    dir: PathBuf,
    /// New directory for config.json, model.safetensors and tokenizer.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(args: &LmArgs) -> Res {
    match &args.command {
        LmCommand::Train(a) => train(a),
        LmCommand::Prune(a) => prune(a),
        LmCommand::Generate(a) => generate_cmd(a),
        LmCommand::Score(a) => score(a),
        LmCommand::ImportGpt2(a) => import(a),
        LmCommand::ExportGpt2(a) => export_gpt2(a),
    }
}

fn tokenizer_spec(a: &LmTrainArgs) -> Result<TokenizerSpec, Box<dyn std::error::Error>> {
    Ok(match a.tokenizer.as_str() {
        "char" => TokenizerSpec::Char,
        "bpe" => TokenizerSpec::Bpe { vocab_size: a.vocab_size },
        s if s.starts_with("gpt2:") => {
            let (v, m) = s[5..].split_once(',').ok_or("--tokenizer gpt2:VOCAB.json,MERGES.txt needs both files")?;
            TokenizerSpec::Gpt2 { vocab: v.into(), merges: m.into() }
        }
        path => TokenizerSpec::File { path: path.into() },
    })
}

fn active(m: &LmMetrics) -> String {
    m.active(1e-3).iter().map(|(d, n)| format!("{}:{n}", d.trim_start_matches("blocks."))).collect::<Vec<_>>().join(" ")
}

/// The step at `share` of `steps` (a share in [0, 1]).
fn share_of(share: f64, steps: usize, flag: &str) -> Result<usize, String> {
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{flag} is a share of the steps in [0, 1], got {share}"));
    }
    Ok((share * steps as f64).round() as usize)
}

fn train(a: &LmTrainArgs) -> Res {
    let cfg = LmTrainConfig {
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        warmup: a.warmup,
        dropout: a.dropout,
        depth: if a.dense { None } else { Some(a.depth) },
        lambda: a.lambda,
        gate_optim: match a.gate_optim {
            GateOptimArg::Recipe => GateOptim::Recipe,
            GateOptimArg::Adam => GateOptim::Adam,
        },
        gate_lr: a.gate_lr,
        gate_momentum: a.gate_momentum,
        gate_decay_from: a.gate_decay_from,
        gate_init: match a.gate_init {
            GateInitArg::Balanced => GateInit::Balanced,
            GateInitArg::Ones => GateInit::Ones,
        },
        seed: a.seed,
        eval_every: a.eval_every,
        eval_windows: a.eval_windows,
        schedule_offset: 0,
        schedule_steps: None,
        // A dense run has no gates to start, and no Adam restart there.
        gate_from: if a.dense { 0 } else { share_of(a.gate_from, a.steps, "--gate-from")? },
        cut_at: if a.cut_at >= 1.0 || a.dense { None } else { Some(share_of(a.cut_at, a.steps, "--cut-at")?) },
        cut_threshold: a.cut_threshold,
    };
    let (dir, new) = match (&a.out, &a.resume) {
        (_, Some(dir)) => (dir.clone(), None),
        (Some(dir), None) => {
            let text = TextSpec {
                corpus: Some(a.corpus.clone()),
                tokenizer: tokenizer_spec(a)?,
                val_fraction: a.val_fraction,
            };
            let n = NewRun {
                n_layer: a.n_layer,
                n_head: a.n_head,
                n_embd: a.n_embd,
                block_size: a.block_size,
                gate_heads: matches!(a.gate, GateGroupsArg::All | GateGroupsArg::Heads),
                gate_mlp: matches!(a.gate, GateGroupsArg::All | GateGroupsArg::Mlp),
                head_group: match a.head_group {
                    HeadGroupArg::Whole => HeadGroup::Whole,
                    HeadGroupArg::Output => HeadGroup::Output,
                },
                text,
            };
            (dir.clone(), Some(n))
        }
        (None, None) => return Err("give --out DIR for a new run or --resume DIR to continue one".into()),
    };
    let bar = if a.quiet || a.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(a.steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} steps {msg} eta {eta}")?.progress_chars("=> "),
        );
        bar
    };
    let (config, history) = train_run(&dir, new.as_ref(), &cfg, &a.device.device()?, |m| {
        if a.json {
            json_line(&serde_json::json!({"event": "eval", "metrics": m}));
        } else if !a.quiet {
            bar.set_position((m.step % a.steps.max(1)).max(1) as u64);
            bar.suspend(|| {
                println!(
                    "step {:>6}  tokens {:>9}  train {:.4}  val {:.4}  {:.0}s  active (rel > 1e-3) {}",
                    m.step,
                    m.tokens_seen,
                    m.train_loss,
                    m.val_loss,
                    m.elapsed_s,
                    active(m)
                )
            });
        }
        Ok(true)
    })?;
    bar.finish_and_clear();
    if a.json {
        json_line(&serde_json::json!({"event": "summary", "dir": dir, "steps_done": config.steps_done,
            "final": history.last()}));
    } else if !a.quiet {
        println!("run {} ({} steps in total)", dir.display(), config.steps_done);
    }
    Ok(())
}

fn print_prune(r: &LmPruneReport) {
    println!("pruned {} -> {}", r.run_dir.display(), r.out_dir.display());
    println!("read-out: {}", r.read_out);
    for g in &r.groups {
        let why = g.decision.map(|d| crate::prune::describe(&d, r.read_out.gap)).unwrap_or_default();
        println!("  {}: removed {} of {}{why}", g.dim, g.removed, g.groups);
    }
    println!("sizes [{}] -> [{}]", sizes(&r.before.sizes), sizes(&r.after.sizes));
    println!(
        "parameters {} -> {} ({:.1}%); FLOPs/token {} -> {}",
        r.before.params,
        r.after.params,
        100.0 * r.after.params as f64 / r.before.params as f64,
        r.before.flops_per_sample,
        r.after.flops_per_sample
    );
    println!(
        "validation ({} windows): gated {:.4}, masked gated {:.4}, compacted {:.4}; compacted vs masked logits max rel diff {:.2e}; greedy tokens identical: {}",
        r.windows, r.val_loss_gated, r.val_loss_masked, r.val_loss_compact, r.max_rel_diff, r.same_greedy_tokens
    );
    println!(
        "generation (batch 1, KV cache): dense {:.0} tokens/s, compacted {:.0} tokens/s",
        r.tokens_per_s_dense, r.tokens_per_s_compact
    );
}

fn prune(a: &LmPruneArgs) -> Res {
    let read_out = crate::prune::read_out_from(a.threshold_abs, a.threshold_rel, a.gap_factor)?;
    let report = prune_lm_run_on(&a.run_dir, &read_out, &a.out, a.force, &a.device.device()?)?;
    if a.json {
        json_line(&serde_json::to_value(&report)?);
    } else if !a.quiet {
        print_prune(&report);
    }
    Ok(())
}

fn generate_cmd(a: &GenerateArgs) -> Res {
    let lm = load_lm_on(&a.model_dir, &a.device.device()?)?;
    let tok = lm.tokenizer.as_ref().ok_or("the model directory has no tokenizer.json")?;
    let config = language_model(&lm.architecture)?;
    let prompt = tok.encode(&a.prompt)?;
    let s = Sampling { temperature: a.temperature, top_k: a.top_k, seed: a.seed };
    let t = std::time::Instant::now();
    let ids = generate(config, &lm.weights, &prompt, a.max_tokens, &s)?;
    let secs = t.elapsed().as_secs_f64();
    let text = tok.decode(&ids)?;
    if a.json {
        json_line(&serde_json::json!({"prompt": a.prompt, "text": text, "tokens": ids.len(),
            "tokens_per_s": ids.len() as f64 / secs.max(1e-9)}));
    } else {
        println!("{}{}", a.prompt, text);
    }
    Ok(())
}

fn parse_ids(path: &std::path::Path) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(v) = serde_json::from_str::<Vec<u32>>(&text) {
        return Ok(v);
    }
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().map_err(|e| format!("{}: token id `{s}`: {e}", path.display()).into()))
        .collect()
}

fn score(a: &ScoreArgs) -> Res {
    let lm = load_lm_on(&a.model_dir, &a.device.device()?)?;
    let config = language_model(&lm.architecture)?;
    let tokens = match (&a.file, &a.token_ids) {
        (_, Some(ids)) => parse_ids(ids)?,
        (Some(file), None) => {
            let tok = lm.tokenizer.as_ref().ok_or("the model directory has no tokenizer.json; use --token-ids")?;
            tok.encode(&dgating_nn::lm::Corpus::from_file(file)?.text)?
        }
        (None, None) => {
            let corpus = lm.corpus.as_ref().ok_or("give a text FILE or --token-ids (the model records no corpus)")?;
            let tok = lm.tokenizer.as_ref().ok_or("the model directory has no tokenizer.json")?;
            let all = tok.encode(&dgating_nn::lm::Corpus::load(corpus)?.text)?;
            dgating_nn::lm::Corpus::split_tokens(&all, lm.val_fraction)?.1.to_vec()
        }
    };
    let s = score_tokens(config, &lm.weights, &tokens, a.batch_size)?;
    if a.json {
        json_line(&serde_json::to_value(s)?);
    } else {
        println!("mean NLL {:.6} nats/token, perplexity {:.4}, {} tokens", s.mean_nll, s.perplexity, s.tokens);
    }
    Ok(())
}

fn import(a: &ImportArgs) -> Res {
    let depth = if a.no_gates { None } else { Some(a.depth) };
    let r = import_gpt2(&a.hf_dir, &a.out, depth, a.corpus.clone())?;
    if a.json {
        json_line(&serde_json::to_value(&r)?);
    } else {
        println!(
            "imported {} -> {}: {} blocks, heads {} (head size {}), n_embd {}, vocab {}, context {}; gates D = {}; tokenizer: {}",
            a.hf_dir.display(),
            r.out_dir.display(),
            r.config.n_layer(),
            heads_text(&r.config.heads),
            r.config.head_size,
            r.config.n_embd,
            r.config.vocab_size,
            r.config.block_size,
            depth.map_or("none".into(), |d| d.to_string()),
            r.tokenizer.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

fn heads_text(heads: &[usize]) -> String {
    let h: Vec<String> = heads.iter().map(usize::to_string).collect();
    h.join("/")
}

fn export_gpt2(a: &ExportArgs) -> Res {
    let lm = dgating_prune::load_lm(&a.dir)?;
    let config = language_model(&lm.architecture)?;
    let w = write_gpt2_dir(config, &lm.weights, &lm.kept, lm.tokenizer.as_ref(), &a.out)?;
    if a.json {
        json_line(&serde_json::to_value(&w)?);
    } else {
        println!(
            "wrote {} ({} {}): {} layers, heads {} of {}, n_inner {}",
            w.out_dir.display(),
            lm.kind,
            a.dir.display(),
            w.heads.len(),
            heads_text(&w.heads),
            w.n_head,
            w.n_inner
        );
        if !w.zero_head_layers.is_empty() {
            println!("  layers {:?} had no head left and got one zero head (output unchanged)", w.zero_head_layers);
        }
        if w.padded_neurons > 0 {
            println!("  {} zero MLP neurons pad every block to n_inner (output unchanged)", w.padded_neurons);
        }
        if w.pruned_heads.iter().any(|p| !p.is_empty()) {
            println!(
                "  pruned heads are recorded as config.pruned_heads: load with transformers 4.x (5.x dropped head pruning)"
            );
        }
    }
    Ok(())
}
