//! A draw ceremony as the web layer sees it: its lifecycle and the organiser's setup.
//!
//! The draw itself (leaves, seed, lottery, allocation, transcript) is `lottery`'s; this
//! module only decides which step may follow which and parses what the organiser sends.

use std::collections::BTreeSet;
use std::fmt;

use lottery::{DrawId, DrawTime, Kindergarten, KindergartenCode, Mechanism, Multiples};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The lifecycle. Steps only go forward; `Announced` may be announced again (a void draw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrawState {
    Draft,
    Open,
    Closed,
    Announced,
    Drawn,
    Published,
    Countersigned,
}

impl DrawState {
    pub const ALL: [DrawState; 7] = [
        DrawState::Draft,
        DrawState::Open,
        DrawState::Closed,
        DrawState::Announced,
        DrawState::Drawn,
        DrawState::Published,
        DrawState::Countersigned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DrawState::Draft => "draft",
            DrawState::Open => "open",
            DrawState::Closed => "closed",
            DrawState::Announced => "announced",
            DrawState::Drawn => "drawn",
            DrawState::Published => "published",
            DrawState::Countersigned => "countersigned",
        }
    }

    pub fn parse(text: &str) -> Option<DrawState> {
        DrawState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the announcement (and so leaves, proofs) is public in this state.
    pub fn is_announced(self) -> bool {
        self >= DrawState::Announced
    }

    /// Whether the result is public (transcript, lookups).
    pub fn is_published(self) -> bool {
        self >= DrawState::Published
    }
}

impl fmt::Display for DrawState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A witness as the organiser names them in the draft (the commitment comes later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSpec {
    pub name: String,
    pub role: String,
}

/// Everything the organiser fixes in the draft, kept as JSON in `draws.setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawSetup {
    /// Ordered by code (the announcement's order).
    pub kindergartens: Vec<Kindergarten>,
    pub mechanism: Mechanism,
    pub multiples: Multiples,
    pub witnesses: Vec<WitnessSpec>,
    pub beacon_source: Option<String>,
    pub draw_time: DrawTime,
    /// Unix milliseconds; applications are accepted from `applications_open` (when set)
    /// until `applications_close` (when set) while the draw is `open`.
    pub applications_open: Option<i64>,
    pub applications_close: Option<i64>,
    /// Whether organisers review applications (资格审核) before they count: only verified
    /// applications enter the announced leaves. `false`: every application counts as
    /// verified unless it is in conflict. Draws stored before this setting review.
    #[serde(default = "review_by_default")]
    pub review: bool,
}

fn review_by_default() -> bool {
    true
}

/// `POST /api/v1/draws`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawInput {
    pub draw_id: String,
    pub title: String,
    #[serde(default)]
    pub event_id: Option<String>,
    pub kindergartens: Vec<KindergartenInput>,
    pub mechanism: String,
    pub multiples: String,
    pub witnesses: Vec<WitnessSpec>,
    #[serde(default)]
    pub beacon_source: Option<String>,
    /// RFC 3339 UTC (`...Z`); defaults to the linked event's scheduled start.
    #[serde(default)]
    pub draw_time: Option<String>,
    #[serde(default)]
    pub applications_open: Option<String>,
    #[serde(default)]
    pub applications_close: Option<String>,
    /// Default `true`.
    #[serde(default)]
    pub review: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindergartenInput {
    pub code: String,
    pub name: String,
    pub seats: u64,
}

/// A parsed draft: id, title, setup.
#[derive(Debug, Clone)]
pub struct DrawDraft {
    pub id: DrawId,
    pub title: String,
    pub setup: DrawSetup,
}

const MAX_TITLE: usize = 200;
const MAX_KINDERGARTENS: usize = 10_000;
const MAX_WITNESSES: usize = 32;
const MAX_TEXT: usize = 200;

impl DrawDraft {
    /// `default_time`: the linked event's scheduled start, used when no `draw_time` is given.
    pub fn parse(input: DrawInput, default_time: Option<String>) -> Result<DrawDraft, ApiError> {
        let id = DrawId::parse(&input.draw_id).map_err(|_| {
            ApiError::validation(
                "draw_id",
                "draw_id must be 1 to 64 characters from A-Z, a-z, 0-9 and -",
            )
        })?;
        let title = input.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(ApiError::validation(
                "title",
                format!("title must be 1 to {MAX_TITLE} characters"),
            ));
        }
        if input.kindergartens.is_empty() || input.kindergartens.len() > MAX_KINDERGARTENS {
            return Err(ApiError::validation(
                "kindergartens",
                format!("a draw has 1 to {MAX_KINDERGARTENS} kindergartens"),
            ));
        }
        let mut kindergartens = Vec::with_capacity(input.kindergartens.len());
        let mut codes = BTreeSet::new();
        for (i, kg) in input.kindergartens.into_iter().enumerate() {
            let field = format!("kindergartens[{i}]");
            let code = KindergartenCode::parse(&kg.code).map_err(|_| {
                ApiError::validation(
                    &format!("{field}.code"),
                    "a kindergarten code is 1 to 32 characters from A-Z, a-z, 0-9 and -",
                )
            })?;
            if !codes.insert(code) {
                return Err(ApiError::validation(
                    &format!("{field}.code"),
                    format!("kindergarten {code} is listed twice"),
                ));
            }
            let name = kg.name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_TEXT {
                return Err(ApiError::validation(
                    &format!("{field}.name"),
                    format!("a kindergarten name is 1 to {MAX_TEXT} characters"),
                ));
            }
            if kg.seats >= 1 << 53 {
                return Err(ApiError::validation(
                    &format!("{field}.seats"),
                    "seats must be below 2^53",
                ));
            }
            kindergartens.push(Kindergarten {
                code,
                name,
                seats: kg.seats,
            });
        }
        kindergartens.sort_by_key(|k| k.code);
        let mechanism = match input.mechanism.as_str() {
            "deferred-acceptance" => Mechanism::DeferredAcceptance,
            "immediate-acceptance" => Mechanism::ImmediateAcceptance,
            _ => {
                return Err(ApiError::validation(
                    "mechanism",
                    "mechanism must be deferred-acceptance or immediate-acceptance",
                ));
            }
        };
        let multiples = match input.multiples.as_str() {
            "whole-or-skip" => Multiples::WholeOrSkip,
            "whole-or-overfill" => Multiples::WholeOrOverfill,
            _ => {
                return Err(ApiError::validation(
                    "multiples",
                    "multiples must be whole-or-skip or whole-or-overfill",
                ));
            }
        };
        if input.witnesses.is_empty() || input.witnesses.len() > MAX_WITNESSES {
            return Err(ApiError::validation(
                "witnesses",
                format!("a draw has 1 to {MAX_WITNESSES} witnesses"),
            ));
        }
        let mut witnesses = Vec::with_capacity(input.witnesses.len());
        for (i, w) in input.witnesses.into_iter().enumerate() {
            let name = w.name.trim().to_owned();
            let role = w.role.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_TEXT {
                return Err(ApiError::validation(
                    &format!("witnesses[{i}].name"),
                    format!("a witness name is 1 to {MAX_TEXT} characters"),
                ));
            }
            if role.is_empty() || role.chars().count() > MAX_TEXT {
                return Err(ApiError::validation(
                    &format!("witnesses[{i}].role"),
                    format!("a witness role is 1 to {MAX_TEXT} characters"),
                ));
            }
            witnesses.push(WitnessSpec { name, role });
        }
        let beacon_source = match input.beacon_source {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) if text.chars().count() > 1000 => {
                return Err(ApiError::validation(
                    "beacon_source",
                    "beacon_source is at most 1000 characters",
                ));
            }
            Some(text) => Some(text.trim().to_owned()),
        };
        let time_text = input.draw_time.or(default_time).ok_or_else(|| {
            ApiError::validation(
                "draw_time",
                "draw_time is required when no event is linked (RFC 3339 UTC, e.g. 2026-06-18T09:30:00Z)",
            )
        })?;
        let draw_time = DrawTime::parse(&time_text).map_err(|_| {
            ApiError::validation(
                "draw_time",
                "draw_time must be RFC 3339 in UTC with a Z suffix, e.g. 2026-06-18T09:30:00Z",
            )
        })?;
        let applications_open = parse_time("applications_open", input.applications_open)?;
        let applications_close = parse_time("applications_close", input.applications_close)?;
        if let (Some(open), Some(close)) = (applications_open, applications_close)
            && close <= open
        {
            return Err(ApiError::validation(
                "applications_close",
                "applications_close must be after applications_open",
            ));
        }
        Ok(DrawDraft {
            id,
            title,
            setup: DrawSetup {
                kindergartens,
                mechanism,
                multiples,
                witnesses,
                beacon_source,
                draw_time,
                applications_open,
                applications_close,
                review: input.review.unwrap_or(true),
            },
        })
    }
}

fn parse_time(field: &str, text: Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| ApiError::validation(field, format!("{field} must be an RFC 3339 time")))
}

/// Formats Unix milliseconds as the spec's time format (`2026-06-18T09:30:00Z`).
pub fn spec_time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The first character of a name and one `*`: what lookups show. One star whatever the
/// length, so the mask tells nothing of the name beyond its first character.
pub fn mask_name(name: &str) -> String {
    match name.chars().next() {
        None => String::new(),
        Some(first) => format!("{first}*"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DrawInput {
        serde_json::from_value(serde_json::json!({
            "draw_id": "2026-spring",
            "title": "Spring places",
            "kindergartens": [
                {"code": "KG-02", "name": "Second", "seats": 3},
                {"code": "KG-01", "name": "First", "seats": 2}
            ],
            "mechanism": "deferred-acceptance",
            "multiples": "whole-or-skip",
            "witnesses": [{"name": "Notary Li", "role": "notary"}],
            "beacon_source": null,
            "draw_time": "2026-06-18T09:30:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn kindergartens_are_ordered_by_code() {
        let draft = DrawDraft::parse(input(), None).unwrap();
        let codes: Vec<&str> = draft
            .setup
            .kindergartens
            .iter()
            .map(|k| k.code.as_str())
            .collect();
        assert_eq!(codes, ["KG-01", "KG-02"]);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: [(&str, serde_json::Value, &str); 5] = [
            ("draw_id", serde_json::json!("bad id!"), "draw_id"),
            ("mechanism", serde_json::json!("boston"), "mechanism"),
            ("multiples", serde_json::json!("split"), "multiples"),
            ("witnesses", serde_json::json!([]), "witnesses"),
            ("draw_time", serde_json::json!("tomorrow"), "draw_time"),
        ];
        for (key, value, field) in cases {
            let mut raw = serde_json::to_value(serde_json::json!({
                "draw_id": "d", "title": "t",
                "kindergartens": [{"code": "A", "name": "A", "seats": 1}],
                "mechanism": "deferred-acceptance", "multiples": "whole-or-skip",
                "witnesses": [{"name": "n", "role": "r"}], "draw_time": "2026-06-18T09:30:00Z"
            }))
            .unwrap();
            raw[key] = value;
            let input: DrawInput = serde_json::from_value(raw).unwrap();
            match DrawDraft::parse(input, None) {
                Err(ApiError::Validation { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{key}: expected a validation error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_repeated_kindergarten_is_refused() {
        let mut raw = input();
        raw.kindergartens[1].code = "KG-02".into();
        assert!(DrawDraft::parse(raw, None).is_err());
    }

    #[test]
    fn states_only_grow() {
        for pair in DrawState::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
            assert_eq!(DrawState::parse(pair[0].as_str()), Some(pair[0]));
        }
    }

    #[test]
    fn names_are_masked_after_the_first_character() {
        assert_eq!(mask_name("王小明"), "王*");
        assert_eq!(mask_name("李"), "李*");
        assert_eq!(mask_name("Anna"), "A*");
    }
}
