//! The verifier's fast path for the largest part of a signed transcript: leaves that are
//! already in their canonical form.
//!
//! A leaf's hash is over `JCS(leaf)`, and the transcript hash over `JCS(transcript)`, so a
//! verifier normally parses the leaves and serialises them again. When the file's leaves
//! array is spelled exactly as RFC 8785 writes it (what gongkai and every other canonical
//! writer produce), each leaf's bytes in the file *are* `JCS(leaf)`, and the array's bytes
//! are the leaves' part of `JCS(transcript)`. This module parses only that spelling, with a
//! parser that knows the leaf schema and borrows nothing it does not keep; anything else
//! (white space, another key order, an escape, a number spelled differently, any value the
//! typed parser would refuse) makes it decline, and the caller falls back to the general
//! parser and serialiser, which judge the file exactly as before.
//!
//! Why this is exact: the accepted language is the canonical form of the [`Leaf`] schema,
//! and every string in it is one that RFC 8785 writes unescaped; the values built are the
//! ones `serde_json` builds for the same bytes (same constructors, same checks). So an
//! accepted leaf's bytes equal [`WriteCanonical`](crate::jcs::WriteCanonical) of the parsed
//! leaf, which the tests check on every accepted input.

use std::ops::Range;

use crate::choice::{Choice, Choices, MAX_CHOICES};
use crate::hash::{Digest, parse_hex_bytes};
use crate::ids::{AppCode, Group, KindergartenCode, is_code_byte};
use crate::leaf::Leaf;
use crate::parallel::{Join, map_ranges};
use crate::serde_util::MAX_SAFE_EXCLUSIVE;

/// Leaves parsed from their canonical bytes, and each leaf's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalLeaves {
    pub leaves: Vec<Leaf>,
    pub hashes: Vec<Digest>,
    /// Where the array `[...]` is in the input.
    pub span: Range<usize>,
}

/// Parses the leaves array that starts at `bytes[start] == b'['`, if it is in canonical
/// form. With a [`Join`] of more than one piece, the array is cut at leaf boundaries and the
/// pieces are parsed (and hashed) at the same time; a cut that is not a boundary of the
/// canonical array makes that piece fail, and then the whole array is parsed in one piece.
#[cfg(test)]
pub(crate) fn parse(bytes: &[u8], start: usize, join: &impl Join) -> Option<CanonicalLeaves> {
    parse_beside(bytes, start, join, 0, || ()).0
}

/// [`parse`], also running `beside` (about as much work as parsing `beside_bytes` of
/// leaves) with the first piece, on the caller's thread.
pub(crate) fn parse_beside<R>(
    bytes: &[u8],
    start: usize,
    join: &impl Join,
    beside_bytes: usize,
    beside: impl FnOnce() -> R,
) -> (Option<CanonicalLeaves>, R) {
    if bytes.get(start) != Some(&b'[') {
        return (None, beside());
    }
    let first = start + 1;
    if bytes.get(first) == Some(&b']') {
        let empty = CanonicalLeaves {
            leaves: Vec::new(),
            hashes: Vec::new(),
            span: start..first + 1,
        };
        return (Some(empty), beside());
    }
    let cuts = cuts(bytes, first, join.pieces(), beside_bytes);
    let (pieces, beside) = if cuts.len() > 2 {
        let piece = |i: usize| {
            let limit = (cuts[i + 1] != usize::MAX).then(|| cuts[i + 1] - 1);
            // The first piece makes room for all leaves, so that the others are appended
            // to it without moving it.
            let room = if i == 0 {
                bytes.len()
            } else {
                limit.unwrap_or(bytes.len())
            };
            parse_run(bytes, cuts[i], limit, room)
        };
        let ((beside, first_piece), others) = join.join(
            || (beside(), piece(0)),
            || {
                map_ranges(join, cuts.len() - 2, &|range: Range<usize>| {
                    range.map(|i| piece(i + 1)).collect::<Vec<_>>()
                })
            },
        );
        let pieces = std::iter::once(first_piece).chain(others.into_iter().flatten());
        (join_runs(pieces), beside)
    } else {
        (None, beside())
    };
    // Without pieces, or when a cut was not between two canonical leaves: in one piece.
    let whole = pieces.or_else(|| parse_run(bytes, first, None, bytes.len()));
    let parsed = whole.and_then(|run| {
        (bytes.get(run.end) == Some(&b']')).then(|| CanonicalLeaves {
            leaves: run.leaves,
            hashes: run.hashes,
            span: start..run.end + 1,
        })
    });
    (parsed, beside)
}

/// Where the leaves array that starts at `start` probably ends (just past its `]`): in a
/// canonical transcript the lottery follows the leaves. Only an estimate, to balance work.
pub(crate) fn end_estimate(bytes: &[u8], start: usize) -> Option<usize> {
    let from = (start + 1).min(bytes.len());
    memchr::memmem::rfind(&bytes[from..], b"],\"lottery\":[").map(|at| from + at + 1)
}

/// Where each piece starts: `first`, then the positions just after a `,` that separates two
/// leaves, near equal shares of the work (`beside_bytes` more for the first piece). The
/// estimate of where the array ends only balances the pieces; a wrong one costs speed,
/// never correctness.
fn cuts(bytes: &[u8], first: usize, pieces: usize, beside_bytes: usize) -> Vec<usize> {
    let mut cuts = vec![first];
    if pieces < 2 || bytes.len() - first < 1 << 16 {
        return cuts;
    }
    let end = end_estimate(bytes, first - 1).unwrap_or(bytes.len());
    let work = end - first + beside_bytes;
    for i in 1..pieces {
        let guess = (first + work * i / pieces).saturating_sub(beside_bytes);
        let Some(&previous) = cuts.last() else { break };
        if guess <= previous || guess >= end {
            continue;
        }
        // A canonical leaf starts with `{"app":"`, which no canonical string can contain.
        if let Some(at) = memchr::memmem::find(&bytes[guess..end], b"},{\"app\":\"") {
            cuts.push(guess + at + 2);
        }
    }
    cuts.push(usize::MAX); // the last piece runs to the closing bracket
    cuts
}

/// Appends the runs of consecutive pieces; `None` if any piece failed.
fn join_runs(runs: impl Iterator<Item = Option<Run>>) -> Option<Run> {
    let mut runs = runs;
    let mut whole = runs.next()??;
    for run in runs {
        let run = run?;
        whole.leaves.extend(run.leaves);
        whole.hashes.extend(run.hashes);
        whole.end = run.end;
    }
    Some(whole)
}

/// Where the value of `transcript.leaves` starts in a signed transcript file, found by
/// walking the two outer objects and skipping every other member's value. Only a locator:
/// what it finds is parsed strictly, and the rest of the file by `serde_json`, which
/// rejects whatever this walk lets through. `None` when the walk does not find the key (an
/// escaped key, say); the caller then parses the whole file the general way.
pub(crate) fn locate(bytes: &[u8]) -> Option<usize> {
    let mut walk = Walk { bytes, at: 0 };
    walk.enter_object()?;
    walk.find_member(b"transcript")?;
    walk.enter_object()?;
    walk.find_member(b"leaves")?;
    (bytes.get(walk.at) == Some(&b'[')).then_some(walk.at)
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Walk<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn white_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn enter_object(&mut self) -> Option<()> {
        self.white_space();
        (self.peek()? == b'{').then(|| self.at += 1)
    }

    /// From just inside an object, moves to the value of member `key` (raw bytes of the key
    /// between its quotes).
    fn find_member(&mut self, key: &[u8]) -> Option<()> {
        loop {
            self.white_space();
            if self.peek()? != b'"' {
                return None;
            }
            let name = self.string()?;
            self.white_space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.white_space();
            if name == key {
                return Some(());
            }
            self.skip_value()?;
            self.white_space();
            if self.peek()? != b',' {
                return None;
            }
            self.at += 1;
        }
    }

    /// Skips a string starting at its opening quote; returns its raw contents.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at + 1;
        let mut at = start;
        loop {
            let found = memchr::memchr2(b'"', b'\\', self.bytes.get(at..)?)?;
            at += found;
            if self.bytes[at] == b'"' {
                self.at = at + 1;
                return Some(&self.bytes[start..at]);
            }
            at += 2; // a backslash and the character it escapes
        }
    }

    /// Skips one value: a string, an array or object (by bracket depth, strings skipped),
    /// or a literal up to the next delimiter.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'[' | b'{' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

struct Run {
    leaves: Vec<Leaf>,
    hashes: Vec<Digest>,
    /// Just past the last leaf.
    end: usize,
}

/// Parses `leaf,leaf,...,leaf` from `at`. With a `limit`, the last leaf must end exactly at
/// `limit` (where the `,` before the next piece is); without, the run ends at the first
/// leaf not followed by `,`. Room is reserved for the leaves that fit before `room_until`.
fn parse_run(bytes: &[u8], mut at: usize, limit: Option<usize>, room_until: usize) -> Option<Run> {
    // A canonical leaf with three choices is about 210 bytes.
    let estimate = room_until.saturating_sub(at) / 200 + 1;
    let mut leaves = Vec::with_capacity(estimate);
    let mut hashes = Vec::with_capacity(estimate);
    let mut scratch = Vec::with_capacity(MAX_CHOICES);
    loop {
        let start = at;
        let mut cursor = Cursor { bytes, at };
        let leaf = cursor.leaf(&mut scratch)?;
        at = cursor.at;
        hashes.push(Digest::of(&[&[0x00], &bytes[start..at]]));
        leaves.push(leaf);
        match limit {
            Some(limit) if at == limit => break,
            Some(limit) if at > limit => return None,
            _ => {}
        }
        if bytes.get(at) == Some(&b',') {
            at += 1;
        } else if limit.is_some() {
            return None;
        } else {
            break;
        }
    }
    Some(Run {
        leaves,
        hashes,
        end: at,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// `{"app":"…","choices":[…],"group":"…","idc":"…"}`
    fn leaf(&mut self, scratch: &mut Vec<Choice>) -> Option<Leaf> {
        self.literal(b"{\"app\":\"")?;
        let app = AppCode::parse_bytes(self.take(10)?).ok()?;
        self.literal(b"\",\"choices\":[")?;
        scratch.clear();
        loop {
            self.literal(b"{\"class\":")?;
            let class = self.class()?;
            self.literal(b",\"kg\":\"")?;
            let kg = KindergartenCode::parse_bytes(self.code()?).ok()?;
            self.literal(b"\"}")?;
            if scratch.len() == MAX_CHOICES {
                return None;
            }
            scratch.push(Choice { kg, class });
            if !self.optional(b',') {
                break;
            }
        }
        let choices = Choices::new(scratch.as_slice().to_vec()).ok()?;
        self.literal(b"],\"group\":\"")?;
        let group = self.plain_string()?;
        let group = if group.is_empty() {
            Group::none()
        } else {
            Group::new(std::str::from_utf8(group).ok()?)
        };
        self.literal(b"\",\"idc\":\"")?;
        let idc = Digest(parse_hex_bytes(self.take(64)?).ok()?);
        self.literal(b"\"}")?;
        Some(Leaf {
            app,
            choices,
            group,
            idc,
        })
    }

    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at + expected.len();
        (self.bytes.get(self.at..end)? == expected).then(|| self.at = end)
    }

    fn optional(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(taken)
    }

    /// A priority class as RFC 8785 writes it: no sign, no leading zero, no fraction or
    /// exponent, from 1 to 2^53 - 1.
    fn class(&mut self) -> Option<u64> {
        let digits = self.run(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 16 || digits[0] == b'0' {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u64, |value, d| value * 10 + u64::from(d - b'0'));
        (value < MAX_SAFE_EXCLUSIVE).then_some(value)
    }

    /// The characters of a kindergarten code (its length is checked by the parser).
    fn code(&mut self) -> Option<&'a [u8]> {
        let code = self.run(is_code_byte);
        (!code.is_empty()).then_some(code)
    }

    /// The contents of a string that RFC 8785 writes without any escape: no `"`, no `\` and
    /// no control character. (UTF-8 validity is checked by the caller.)
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let text = self.run(|b| b != b'"' && b != b'\\' && b >= 0x20);
        (self.bytes.get(self.at) == Some(&b'"')).then_some(text)
    }

    fn run(&mut self, accept: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.at;
        let rest = &self.bytes[start.min(self.bytes.len())..];
        let len = rest.iter().position(|&b| !accept(b)).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jcs::WriteCanonical;
    use crate::leaf::leaves_json;
    use crate::parallel::Sequential;

    /// A join that splits into `n` pieces but runs them in turn.
    struct Pieces(usize);

    impl Join for Pieces {
        fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
        where
            A: FnOnce() -> RA,
            B: FnOnce() -> RB + Send,
            RB: Send,
        {
            let rb = b();
            (a(), rb)
        }

        fn pieces(&self) -> usize {
            self.0
        }
    }

    fn leaf(app: &str, group: &str, choices: &[(&str, u64)]) -> Leaf {
        Leaf {
            app: AppCode::parse(app).unwrap(),
            choices: Choices::new(
                choices
                    .iter()
                    .map(|&(kg, class)| Choice {
                        kg: KindergartenCode::parse(kg).unwrap(),
                        class,
                    })
                    .collect(),
            )
            .unwrap(),
            group: Group::new(group),
            idc: Digest::of(&[app.as_bytes()]),
        }
    }

    fn sample() -> Vec<Leaf> {
        vec![
            leaf("0000000001", "", &[("KG-01", 1)]),
            leaf(
                "0000000002",
                "双胞胎 A",
                &[("KG-02", 2), ("a", 9_007_199_254_740_991)],
            ),
            leaf(
                "0000000003",
                "双胞胎 A",
                &[("KG-02", 2), ("a", 9_007_199_254_740_991)],
            ),
            leaf(
                "ZZZZZZZZZZ",
                "",
                &[("KG-03", 10), ("KG-01", 1), ("KG-02", 3)],
            ),
        ]
    }

    /// Parses `json` (a leaves array) with prefix and suffix around it, in `pieces` pieces.
    fn parse_str(json: &[u8], pieces: usize) -> Option<Vec<Leaf>> {
        let mut bytes = b"{\"leaves\":".to_vec();
        let start = bytes.len();
        bytes.extend_from_slice(json);
        bytes.extend_from_slice(b",\"lottery\":[]}");
        let parsed = parse(&bytes, start, &Pieces(pieces))?;
        assert_eq!(&bytes[parsed.span.clone()], json);
        for (leaf, hash) in parsed.leaves.iter().zip(&parsed.hashes) {
            assert_eq!(*hash, leaf.hash());
        }
        Some(parsed.leaves)
    }

    #[test]
    fn canonical_leaves_parse_to_what_serde_gives() {
        let leaves = sample();
        let json = leaves_json(&leaves).json;
        for pieces in 1..4 {
            assert_eq!(parse_str(&json, pieces).as_deref(), Some(&leaves[..]));
        }
        let serde: Vec<Leaf> = serde_json::from_slice(&json).unwrap();
        assert_eq!(serde, leaves);
        assert_eq!(parse_str(b"[]", 2), Some(vec![]));
    }

    #[test]
    fn pieces_are_cut_at_leaf_boundaries_in_large_arrays() {
        let leaves: Vec<Leaf> = (0..1000)
            .map(|i| {
                let app = format!("{i:010}");
                let group = if i % 7 == 0 { "x},{\u{1}" } else { "" };
                let mut leaf = leaf(&app, "", &[("KG-01", 1), ("KG-02", 2)]);
                if i % 7 == 0 {
                    // A group with characters that need escapes: not canonical-plain, so
                    // the fast path must decline the array.
                    leaf.group = Group::new(group);
                }
                leaf
            })
            .collect();
        let json = leaves_json(&leaves).json;
        assert_eq!(parse_str(&json, 3), None);
        let plain: Vec<Leaf> = leaves
            .into_iter()
            .map(|mut leaf| {
                if !leaf.group.is_none() {
                    leaf.group = Group::new("},{\u{e9}");
                }
                leaf
            })
            .collect();
        let json = leaves_json(&plain).json;
        assert!(json.len() > 1 << 16);
        for pieces in [1, 2, 3, 8] {
            assert_eq!(parse_str(&json, pieces).as_deref(), Some(&plain[..]));
        }
    }

    #[test]
    fn anything_but_the_canonical_spelling_is_declined() {
        let canonical = String::from_utf8(leaves_json(&sample()[..1]).json).unwrap();
        assert!(parse_str(canonical.as_bytes(), 1).is_some());
        let variants = [
            canonical.replace("{\"app\"", "{ \"app\""),
            canonical.replace("\"class\":1", "\"class\":01"),
            canonical.replace("\"class\":1", "\"class\":1.0"),
            canonical.replace("\"class\":1", "\"class\":1e0"),
            canonical.replace("\"class\":1", "\"class\":0"),
            canonical.replace("\"group\":\"\"", "\"group\":\"\\u0041\""),
            canonical.replace("KG-01", "KG\\u002d01"),
            canonical.replace("[{", "[ {"),
            canonical.replace("}]", "} ]"),
            canonical.replace("\"group\":\"\",\"idc\"", "\"idc\"") + "",
            canonical.replace("}]", "},]"),
        ];
        for variant in variants {
            assert_ne!(variant, canonical);
            assert_eq!(parse_str(variant.as_bytes(), 1), None, "{variant}");
        }
        // Key order other than the canonical one.
        let reordered = canonical.replace(
            "{\"class\":1,\"kg\":\"KG-01\"}",
            "{\"kg\":\"KG-01\",\"class\":1}",
        );
        assert_eq!(parse_str(reordered.as_bytes(), 1), None);
        // Values the typed parser refuses: repeated kindergarten, 9 choices, uppercase hex.
        let repeated = leaf("0000000001", "", &[("A", 1)]);
        let mut json = repeated.to_canonical_vec();
        let twice = String::from_utf8(json.clone()).unwrap().replace(
            "{\"class\":1,\"kg\":\"A\"}",
            "{\"class\":1,\"kg\":\"A\"},{\"class\":2,\"kg\":\"A\"}",
        );
        assert_eq!(parse_str(format!("[{twice}]").as_bytes(), 1), None);
        let nine = (0..9)
            .map(|i| format!("{{\"class\":1,\"kg\":\"K{i}\"}}"))
            .collect::<Vec<_>>()
            .join(",");
        let nine = String::from_utf8(json.clone())
            .unwrap()
            .replace("{\"class\":1,\"kg\":\"A\"}", &nine);
        assert_eq!(parse_str(format!("[{nine}]").as_bytes(), 1), None);
        let at = json.len() - 3;
        json[at] = json[at].to_ascii_uppercase();
        json[at] = if json[at].is_ascii_digit() {
            b'A'
        } else {
            json[at]
        };
        let mut array = b"[".to_vec();
        array.extend_from_slice(&json);
        array.push(b']');
        assert_eq!(parse_str(&array, 1), None);
    }

    #[test]
    fn invalid_utf8_in_a_group_is_declined() {
        let mut json = leaves_json(&[leaf("0000000001", "ab", &[("A", 1)])]).json;
        let at = json.windows(2).position(|w| w == b"ab").unwrap();
        json[at] = 0xff;
        assert_eq!(parse_str(&json, 1), None);
    }

    #[test]
    fn the_leaves_are_located_past_every_other_member() {
        let file = br#"{"signatures":[{"a":"}]\"leaves\":["}],"transcript":{"admitted":[{"kg":"x","units":["\\",1,true,null]}],"title":"\"leaves\":[1]","leaves":[{"app":"0"}],"x":1}}"#;
        let at = locate(file).unwrap();
        assert!(file[at..].starts_with(b"[{\"app\":\"0\"}]"));
        let pretty = b"{ \"transcript\" :\n {\"a\": -1.5e3 , \"leaves\"\t: [ ] } }";
        let at = locate(pretty).unwrap();
        assert!(pretty[at..].starts_with(b"[ ]"));
        for missing in [
            &b"{\"transcript\":{\"lea\\u0076es\":[]}}"[..],
            b"{\"transcript\":{\"leaves\":null}}",
            b"{\"transcript\":[]}",
            b"[]",
            b"{\"transcript\":{\"x\":[[]}",
            b"{\"transcript\":{\"x\":\"",
            b"",
        ] {
            assert_eq!(
                locate(missing),
                None,
                "{}",
                String::from_utf8_lossy(missing)
            );
        }
    }

    #[test]
    fn a_bracket_that_is_not_there_is_no_array() {
        assert_eq!(parse(b"{}", 0, &Sequential), None);
        assert_eq!(parse(b"[", 0, &Sequential), None);
        assert_eq!(parse(b"[{", 0, &Sequential), None);
    }
}
