//! Corpora and tokenizers: the built-in Moby Dick, bad corpora, the split by position,
//! character-level and trained byte-level BPE round trips, and GPT-2's tokenization (ids
//! recorded by `tests/reference/gpt2_vocab_subset.py` with the full GPT-2 vocabulary).

use std::path::Path;

use dgating_nn::lm::{Corpus, LmTokenizer, TokenizerSpec};

#[test]
fn the_built_in_corpus_is_moby_dick() {
    let c = Corpus::builtin("moby-dick").unwrap();
    assert_eq!(c.text.len(), 1_204_997);
    assert!(c.text.starts_with("CHAPTER 1. Loomings.\n\nCall me Ishmael."));
    assert!(Corpus::builtin("shakespeare").unwrap_err().to_string().contains("moby-dick"));
    assert_eq!(Corpus::load("moby-dick").unwrap(), c);
}

#[test]
fn bad_corpora_are_errors_with_the_byte_offset() {
    let err = Corpus::from_bytes("x.txt", b"caf\xc3\xa9 ok \xff\xfe".to_vec()).unwrap_err().to_string();
    assert!(err.contains("x.txt") && err.contains("byte offset 9") && err.contains("0xff"), "{err}");
    let err = Corpus::from_bytes("e.txt", b" \n\t".to_vec()).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    assert!(Corpus::from_file(&dir.path().join("missing.txt")).is_err());
    let tokens: Vec<u32> = (0..10).collect();
    let (train, val) = Corpus::split_tokens(&tokens, 0.2).unwrap();
    assert_eq!((train, val), (&tokens[..8], &tokens[8..]));
    assert!(Corpus::split_tokens(&tokens, 1.0).is_err());
}

#[test]
fn character_level_round_trips_and_refuses_unknown_characters() {
    let t = LmTokenizer::build(&TokenizerSpec::Char, "hello, whale!").unwrap();
    assert!(t.is_char_level());
    assert_eq!(t.vocab_size(), 9);
    let err = t.encode("z whale").unwrap_err().to_string();
    assert!(err.contains("'z'") && err.contains("byte offset 0"), "{err}");
    let err = t.encode("hé").unwrap_err().to_string();
    assert!(err.contains("byte offset 1"), "{err}");
    let ids = t.encode("hello whale").unwrap();
    assert_eq!(t.decode(&ids).unwrap(), "hello whale");
    // Saved as tokenizer.json and loaded back, it is still character-level.
    let back = LmTokenizer::from_json("t", t.to_json().unwrap().as_bytes()).unwrap();
    assert!(back.is_char_level());
    assert_eq!(back.encode("hello whale").unwrap(), ids);
    assert!(t.check_model_vocab(8).unwrap_err().to_string().contains("mismatch"));
    assert!(t.decode(&[9]).is_err());
}

#[test]
fn byte_level_bpe_trains_to_its_vocabulary_and_round_trips() {
    let text: String = Corpus::builtin("moby-dick").unwrap().text.chars().take(20_000).collect();
    let t = LmTokenizer::build(&TokenizerSpec::Bpe { vocab_size: 320 }, &text).unwrap();
    assert!(!t.is_char_level());
    assert!(t.vocab_size() <= 320 && t.vocab_size() > 256, "{}", t.vocab_size());
    let sample = "Call me Ishmael—the whale, é, 😀!";
    let ids = t.encode(sample).unwrap();
    assert_eq!(t.decode(&ids).unwrap(), sample, "byte-level: every string round-trips");
    assert!(ids.len() < sample.len(), "merges shorten the text");
    assert!(LmTokenizer::build(&TokenizerSpec::Bpe { vocab_size: 100 }, &text).is_err());
}

#[test]
fn gpt2_tokenization_gives_gpt2_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt2-subset");
    let spec = TokenizerSpec::Gpt2 {
        vocab: dir.join("vocab.json").display().to_string(),
        merges: dir.join("merges.txt").display().to_string(),
    };
    let t = LmTokenizer::build(&spec, "").unwrap();
    // tests/reference/gpt2_vocab_subset.py, computed with the full GPT-2 vocabulary.
    let cases: [(&str, &[u32]); 3] = [
        ("Hello world", &[15496, 995]),
        (
            "Call me Ishmael. Some years ago--never mind how long precisely--having little money,",
            &[
                14134, 502, 1148, 21720, 417, 13, 2773, 812, 2084, 438, 12081, 2000, 703, 890, 10582, 438, 40965, 1310,
                1637, 11,
            ],
        ),
        (
            "  the whale's 3 harpoons!\nThey'll sail at 10:30.",
            &[220, 262, 22206, 338, 513, 3971, 27575, 0, 198, 2990, 1183, 14936, 379, 838, 25, 1270, 13],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(t.decode(ids).unwrap(), text);
    }
    assert!(t.vocab_size() > 40965);
    let bad = TokenizerSpec::Gpt2 { vocab: "/nonexistent/vocab.json".into(), merges: "/nonexistent/m.txt".into() };
    assert!(LmTokenizer::build(&bad, "").is_err());
}
