//! [`LmTokenizer`]: every tokenizer is a Hugging Face `tokenizers` tokenizer, saved as
//! `tokenizer.json` next to the model (loadable by the Python `tokenizers` package too):
//!
//! * character-level: one token per distinct character of the corpus (a BPE with no merges
//!   and no pre-tokenizer); a character it has not seen is an error naming its byte offset;
//! * byte-level BPE trained on the corpus to a vocabulary size (GPT-2's pre-tokenizer, 256
//!   byte tokens + merges);
//! * any `tokenizer.json`;
//! * GPT-2's `vocab.json` + `merges.txt` (also under their names `encoder.json` + `vocab.bpe`
//!   in OpenAI's release), byte-level, no prefix space, as transformers' `GPT2Tokenizer`.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{Model as _, Tokenizer};

use crate::error::{Error, Result};

/// Which tokenizer to build for a corpus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// One token per character of the corpus.
    Char,
    /// Byte-level BPE trained on the corpus.
    Bpe {
        /// Vocabulary size (>= 257: the 256 bytes and at least one merge).
        vocab_size: usize,
    },
    /// A `tokenizer.json` file.
    File {
        /// Its path.
        path: String,
    },
    /// GPT-2's `vocab.json` (`encoder.json`) and `merges.txt` (`vocab.bpe`).
    Gpt2 {
        /// The vocabulary file.
        vocab: String,
        /// The merges file.
        merges: String,
    },
}

/// A tokenizer for a language model.
#[derive(Debug, Clone)]
pub struct LmTokenizer {
    inner: Tokenizer,
    char_level: bool,
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Model { what: format!("tokenizer ({what})"), message: e.to_string() }
}

impl LmTokenizer {
    /// Builds the tokenizer `spec` asks for; `text` is the corpus (for `char` and `bpe`).
    pub fn build(spec: &TokenizerSpec, text: &str) -> Result<Self> {
        match spec {
            TokenizerSpec::Char => Self::char_level(text),
            TokenizerSpec::Bpe { vocab_size } => Self::train_bpe(text, *vocab_size),
            TokenizerSpec::File { path } => Self::from_file(Path::new(path)),
            TokenizerSpec::Gpt2 { vocab, merges } => Self::gpt2(Path::new(vocab), Path::new(merges)),
        }
    }

    /// One token per distinct character of `text`, ids in code-point order.
    pub fn char_level(text: &str) -> Result<Self> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let vocab: tokenizers::models::bpe::Vocab =
            chars.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, vec![]).build().map_err(|e| tk_err("char", e))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_decoder(Some(tokenizers::decoders::fuse::Fuse::new()));
        Ok(Self { inner, char_level: true })
    }

    /// A byte-level BPE of `vocab_size` tokens trained on `text`.
    pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Self> {
        if !(257..=1 << 20).contains(&vocab_size) {
            return Err(Error::Config(format!("a byte-level BPE needs a vocabulary of 257..=2^20, got {vocab_size}")));
        }
        let mut tokenizer = Tokenizer::new(BPE::default());
        tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        // Lines as training sequences (the pre-tokenizer splits words; merges never cross them).
        tokenizer.train(&mut trainer, text.split_inclusive('\n')).map_err(|e| tk_err("bpe training", e))?;
        Ok(Self { inner: tokenizer, char_level: false })
    }

    /// A saved `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| tk_err(&path.display().to_string(), e))?;
        Ok(Self::wrap(inner))
    }

    /// The bytes of a `tokenizer.json`.
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Self> {
        Ok(Self::wrap(Tokenizer::from_bytes(bytes).map_err(|e| tk_err(name, e))?))
    }

    fn wrap(inner: Tokenizer) -> Self {
        let char_level = inner.get_pre_tokenizer().is_none()
            && inner.get_normalizer().is_none()
            && inner.get_vocab(false).keys().all(|t| t.chars().count() == 1);
        Self { inner, char_level }
    }

    /// GPT-2's byte-level BPE from `vocab.json` and `merges.txt`.
    pub fn gpt2(vocab: &Path, merges: &Path) -> Result<Self> {
        let name = format!("{} + {}", vocab.display(), merges.display());
        let bpe = BPE::from_file(&vocab.display().to_string(), &merges.display().to_string())
            .build()
            .map_err(|e| tk_err(&name, e))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        Ok(Self { inner, char_level: false })
    }

    /// One more than the largest token id (added tokens included): the model's `vocab_size`
    /// must be at least this.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1)
    }

    /// Whether this is a character-level tokenizer.
    pub fn is_char_level(&self) -> bool {
        self.char_level
    }

    /// Token ids of `text`. A character-level tokenizer refuses characters outside its
    /// vocabulary (with the byte offset) instead of dropping them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if self.char_level {
            let model = self.inner.get_model();
            let mut buf = [0u8; 4];
            return text
                .char_indices()
                .map(|(at, c)| {
                    model.token_to_id(c.encode_utf8(&mut buf)).ok_or_else(|| {
                        Error::Config(format!(
                            "character {c:?} at byte offset {at} is not in the tokenizer's vocabulary"
                        ))
                    })
                })
                .collect();
        }
        let enc = self.inner.encode_fast(text, false).map_err(|e| tk_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let size = self.vocab_size();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= size) {
            return Err(Error::Config(format!("token id {id} is outside the tokenizer's vocabulary of {size}")));
        }
        self.inner.decode(ids, false).map_err(|e| tk_err("decode", e))
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| tk_err("save", e))
    }

    /// Writes `tokenizer.json` to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::train::checkpoint::atomic_write(path, self.to_json()?.as_bytes())
    }

    /// Refuses a model vocabulary smaller than this tokenizer's.
    pub fn check_model_vocab(&self, model_vocab: usize) -> Result<()> {
        if self.vocab_size() > model_vocab {
            return Err(Error::Config(format!(
                "tokenizer/model vocabulary mismatch: the tokenizer has {} tokens, the model only {model_vocab}",
                self.vocab_size()
            )));
        }
        Ok(())
    }
}
