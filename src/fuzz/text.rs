//! Mutations of text inputs (TOML, CSV, JSON) along their tokens.

use super::Target;
use super::inputs::{INTERESTING_TEXT, PUNCTUATION, pick};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Mutated inputs are cut to this many bytes.

#[derive(Clone, Copy, PartialEq)]
enum Token {
    Number,
    Word,
    Space,
    Other,
}

/// Splits text into tokens (byte ranges): numbers, words, whitespace and single characters.
fn tokens(text: &str) -> Vec<(Token, std::ops::Range<usize>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let class = |c: u8| {
            if c.is_ascii_digit() {
                Token::Number
            } else if c.is_ascii_alphabetic() || c == b'_' {
                Token::Word
            } else if c.is_ascii_whitespace() {
                Token::Space
            } else {
                Token::Other
            }
        };
        let kind = class(b);
        let mut j = i + 1;
        match kind {
            Token::Number => {
                while j < bytes.len()
                    && (bytes[j].is_ascii_digit() || b".eE+-_".contains(&bytes[j]))
                {
                    j += 1;
                }
            }
            Token::Word => {
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || b"_-".contains(&bytes[j]))
                {
                    j += 1;
                }
            }
            Token::Space => {
                while j < bytes.len() && bytes[j].is_ascii_whitespace() && bytes[j] != b'\n' {
                    j += 1;
                }
            }
            Token::Other => {
                while j < bytes.len() && !text.is_char_boundary(j) {
                    j += 1;
                }
            }
        }
        out.push((kind, i..j));
        i = j;
    }
    out
}

pub(super) fn text_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let text = String::from_utf8_lossy(data).into_owned();
    let toks = tokens(&text);
    let replace = |range: std::ops::Range<usize>, with: &[u8]| -> Vec<u8> {
        let mut out = text.as_bytes()[..range.start].to_vec();
        out.extend_from_slice(with);
        out.extend_from_slice(&text.as_bytes()[range.end..]);
        out
    };
    let of_kind = |kind: Token| -> Vec<std::ops::Range<usize>> {
        toks.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    *data = match rng.random_range(0..12) {
        0..=2 => {
            // A number becomes an interesting one (or a word does, less often).
            let mut spots = of_kind(Token::Number);
            if spots.is_empty() || rng.random_bool(0.1) {
                spots.extend(of_kind(Token::Word));
            }
            match pick(rng, &spots) {
                Some(r) => {
                    let n = pick(rng, INTERESTING_TEXT).unwrap_or(&"0");
                    replace(r.clone(), n.as_bytes())
                }
                None => return,
            }
        }
        3 | 4 => {
            // A word becomes another word of the dictionary.
            match (
                pick(rng, &of_kind(Token::Word)),
                pick(rng, &target.dictionary),
            ) {
                (Some(r), Some(w)) => replace(r.clone(), w),
                _ => return,
            }
        }
        5 => match pick(rng, &toks) {
            Some((_, r)) => replace(r.clone(), b""),
            None => return,
        },
        6 => match pick(rng, &toks) {
            Some((_, r)) => {
                let t = text.as_bytes()[r.clone()].to_vec();
                replace(r.start..r.start, &t)
            }
            None => return,
        },
        7 => {
            // Punctuation, a word or a long string at a token boundary.
            let at = pick(rng, &toks).map_or(0, |(_, r)| r.start);
            let insert: Vec<u8> = match rng.random_range(0..4) {
                0 => pick(rng, &target.dictionary).cloned().unwrap_or_default(),
                1 => "A".repeat(rng.random_range(100..5000)).into_bytes(),
                _ => pick(rng, PUNCTUATION).unwrap_or(&",").as_bytes().to_vec(),
            };
            replace(at..at, &insert)
        }
        8 | 9 if !lines.is_empty() => {
            // Lines: delete, duplicate, swap, or take one from another seed.
            let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let i = rng.random_range(0..lines.len());
            match rng.random_range(0..4) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    let n = rng.random_range(1..4);
                    for _ in 0..n {
                        lines.insert(i, l.clone());
                    }
                }
                2 => {
                    let j = rng.random_range(0..lines.len());
                    lines.swap(i, j);
                }
                _ => {
                    if let Some(other) = pick(rng, &target.seeds) {
                        let other = String::from_utf8_lossy(other).into_owned();
                        let theirs: Vec<&str> = other.split_inclusive('\n').collect();
                        if let Some(l) = pick(rng, &theirs) {
                            lines.insert(i, l.to_string());
                        }
                    }
                }
            }
            lines.concat().into_bytes()
        }
        10 if !text.is_empty() => {
            let cut = toks
                .get(rng.random_range(0..toks.len().max(1)))
                .map_or(0, |(_, r)| r.start);
            text.as_bytes()[..cut].to_vec()
        }
        _ => return,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_the_text() {
        let text = "a = [1, 2.5e3]\n# é\nname = \"x_y\"\n";
        let toks = tokens(text);
        let joined: String = toks.iter().map(|(_, r)| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        assert!(
            toks.iter()
                .any(|(k, r)| *k == Token::Number && &text[r.clone()] == "2.5e3")
        );
    }
}
