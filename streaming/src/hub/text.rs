//! User text: control-character stripping, the length rule and the sensitive-word list.
//!
//! Text stays plain text end to end: nothing here escapes HTML, because pages render chat
//! with text nodes / auto-escaping templates. Escaping here would double-escape there.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::{ErrorCode, HubError};

/// Removes control characters (C0, C1, DEL), bidirectional overrides (which let a
/// message render reversed or spoof another's text) and invisible format characters
/// (zero-width spaces, soft hyphens, word joiners: they hide words from the sensitive
/// list and make empty-looking messages), then trims surrounding whitespace. A
/// zero-width joiner stays between two emoji, where it joins them into one. Newlines and
/// tabs become spaces: chat is one line.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '\n' | '\r' | '\t') {
            out.push(' ');
        } else if c == '\u{200D}' {
            let joins_emoji = out.chars().next_back().is_some_and(is_emoji)
                && chars.peek().copied().is_some_and(is_emoji);
            if joins_emoji {
                out.push(c);
            }
        } else if !(c.is_control() || is_bidi_control(c) || is_invisible(c)) {
            out.push(c);
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_owned()
    }
}

/// Format characters and fillers that render as nothing (Unicode general category Cf
/// and the Hangul fillers), beside the bidi controls above.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{08E2}'
        | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}' | '\u{200C}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Pictographs a zero-width joiner may join (family, profession and flag sequences).
fn is_emoji(c: char) -> bool {
    matches!(c, '\u{2600}'..='\u{27BF}' | '\u{1F000}'..='\u{1FAFF}' | '\u{FE0F}')
}

/// The form text is compared in: NFKC (fullwidth letters and digits become ASCII,
/// compatibility forms their plain letters), lower case, nothing invisible. Used for the
/// sensitive-word list and for reserved nicknames.
pub fn fold(text: &str) -> String {
    folded_chars(text).map(|(c, _)| c).collect()
}

/// Each folded character with the byte range of the character of `text` it came from.
fn folded_chars(text: &str) -> impl Iterator<Item = (char, std::ops::Range<usize>)> + '_ {
    text.char_indices()
        .filter(|(_, c)| !(is_invisible(*c) || is_bidi_control(*c) || *c == '\u{200D}'))
        .flat_map(|(at, c)| {
            let range = at..at + c.len_utf8();
            std::iter::once(c)
                .nfkc()
                .flat_map(char::to_lowercase)
                .map(move |folded| (folded, range.clone()))
        })
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Cleans `text` and checks it is non-empty and at most `max_chars` characters
/// (Unicode scalar values: "500 characters" means 500 汉字, not 500 bytes).
pub fn clean_message(text: &str, max_chars: usize) -> Result<String, ErrorCode> {
    // Reject grossly oversized input before allocating; 4 bytes per char is the UTF-8 max.
    if text.len() > max_chars.saturating_mul(4).saturating_add(1024) {
        return Err(ErrorCode::TooLong);
    }
    let cleaned = clean(text);
    if cleaned.is_empty() {
        return Err(ErrorCode::Empty);
    }
    if cleaned.chars().count() > max_chars {
        return Err(ErrorCode::TooLong);
    }
    Ok(cleaned)
}

/// Nicknames: cleaned, at most 24 characters, never empty.
pub fn clean_nickname(nickname: &str) -> String {
    let cleaned: String = clean(nickname).chars().take(24).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "观众".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// What to do with a message that contains a listed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveMode {
    /// Replace every character of each match with `*` and accept the message.
    #[default]
    Mask,
    /// Refuse the message with `sensitive_word`.
    Reject,
}

/// The configured sensitive-word list, compiled once into an Aho-Corasick automaton
/// (one pass over the text whatever the list length; ASCII matched case-insensitively).
#[derive(Debug, Clone, Default)]
pub struct SensitiveWords {
    mode: SensitiveMode,
    automaton: Option<AhoCorasick>,
}

impl SensitiveWords {
    pub fn new<I, S>(words: I, mode: SensitiveMode) -> Result<SensitiveWords, HubError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let words: Vec<String> = words
            .into_iter()
            .map(|w| fold(w.as_ref().trim()))
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Ok(SensitiveWords {
                mode,
                automaton: None,
            });
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|e| HubError::SensitiveWords(e.to_string()))?;
        Ok(SensitiveWords {
            mode,
            automaton: Some(automaton),
        })
    }

    /// Parses the config file format: one word per line, `#` starts a comment line.
    pub fn parse(file: &str, mode: SensitiveMode) -> Result<SensitiveWords, HubError> {
        SensitiveWords::new(
            file.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
            mode,
        )
    }

    pub fn mode(&self) -> SensitiveMode {
        self.mode
    }

    /// Applies the list: the text unchanged, masked, or `Err(SensitiveWord)`. Words match
    /// the folded text ([`fold`]: fullwidth, case and invisible characters make no
    /// difference); masking stars the characters of `text` a match came from.
    pub fn apply(&self, text: String) -> Result<String, ErrorCode> {
        let Some(automaton) = &self.automaton else {
            return Ok(text);
        };
        let mut folded = String::with_capacity(text.len());
        // For each byte of `folded`, the range of `text` its character came from.
        let mut origin = Vec::with_capacity(text.len());
        for (c, range) in folded_chars(&text) {
            folded.push(c);
            origin.extend(std::iter::repeat_n(range, c.len_utf8()));
        }
        let mut matches = automaton.find_iter(&folded).peekable();
        if matches.peek().is_none() {
            return Ok(text);
        }
        if self.mode == SensitiveMode::Reject {
            return Err(ErrorCode::SensitiveWord);
        }
        let mut masked = vec![false; text.len()];
        for m in matches {
            for range in &origin[m.start()..m.end()] {
                masked[range.start] = true;
            }
        }
        Ok(text
            .char_indices()
            .map(|(at, c)| if masked[at] { '*' } else { c })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_controls_and_bidi_and_trims() {
        assert_eq!(clean("  a\u{0}b\u{7}c\u{202E}d\n e\u{85}  "), "abcd  e");
        assert_eq!(
            clean("<b>x</b>"),
            "<b>x</b>",
            "HTML stays text; pages escape"
        );
        assert_eq!(clean("👨\u{200D}👩"), "👨\u{200D}👩", "ZWJ emoji survive");
        assert_eq!(clean("a\u{200D}b\u{200B}c\u{FEFF}\u{2060}"), "abc");
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let han = "政".repeat(500);
        assert_eq!(clean_message(&han, 500).as_deref(), Ok(han.as_str()));
        assert_eq!(
            clean_message(&"政".repeat(501), 500),
            Err(ErrorCode::TooLong)
        );
        assert_eq!(clean_message(" \u{1}\t ", 500), Err(ErrorCode::Empty));
        // Only invisible characters: nothing to show, refused.
        assert_eq!(
            clean_message("\u{200B}\u{2060}\u{00AD} \u{FEFF}", 500),
            Err(ErrorCode::Empty)
        );
    }

    #[test]
    fn nickname_fallback_and_cap() {
        assert_eq!(clean_nickname("\u{0} "), "观众");
        assert_eq!(clean_nickname(&"长".repeat(40)).chars().count(), 24);
    }

    #[test]
    fn masks_or_rejects() {
        let list = "# comment\n坏词\nBadWord\n\n";
        let mask = SensitiveWords::parse(list, SensitiveMode::Mask).unwrap();
        assert_eq!(
            mask.apply("这是坏词和badword".into()).unwrap(),
            "这是**和*******"
        );
        assert_eq!(mask.apply("干净".into()).unwrap(), "干净");
        let reject = SensitiveWords::parse(list, SensitiveMode::Reject).unwrap();
        assert_eq!(reject.apply("坏词".into()), Err(ErrorCode::SensitiveWord));
        assert_eq!(reject.apply("fine".into()).unwrap(), "fine");
        // Invisible characters, fullwidth forms and case hide nothing.
        for disguised in [
            "坏\u{200B}词",
            "坏\u{00AD}词",
            "bad\u{200B}word",
            "ｂａｄｗｏｒｄ",
            "ＢａＤ\u{2060}word",
        ] {
            assert_eq!(
                reject.apply(clean(disguised)),
                Err(ErrorCode::SensitiveWord),
                "{disguised:?}"
            );
        }
        assert_eq!(
            mask.apply(clean("说ｂａｄｗｏｒｄ了")).unwrap(),
            "说*******了"
        );
        assert_eq!(mask.apply("坏\u{200B}词".into()).unwrap(), "*\u{200B}*");
        let empty = SensitiveWords::parse("", SensitiveMode::Reject).unwrap();
        assert_eq!(empty.apply("坏词".into()).unwrap(), "坏词");
    }
}
