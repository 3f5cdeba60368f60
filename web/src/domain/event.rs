//! Live events: interviews, enforcement livestreams and draw ceremonies.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),* }
        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $text),* } }
            pub fn parse(s: &str) -> Option<$name> { match s { $($text => Some($name::$variant),)* _ => None } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(EventKind { Interview => "interview", Enforcement => "enforcement", Draw => "draw" });
string_enum!(EventForm { Video => "video", Text => "text" });
string_enum!(Visibility { Public => "public", Unlisted => "unlisted" });
string_enum!(
    /// `scheduled` -> `live` -> `ended`; `cancelled` only from `scheduled`.
    EventStatus { Scheduled => "scheduled", Live => "live", Ended => "ended", Cancelled => "cancelled" }
);

/// Random, unguessable (unlisted events are reachable only by their id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

impl EventId {
    pub fn generate() -> EventId {
        let mut rng = rand::thread_rng();
        EventId(
            (0..12)
                .map(|_| char::from(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())]))
                .collect(),
        )
    }

    pub fn parse(s: &str) -> Option<EventId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| EventId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub organisation: String,
}

/// An event as stored and served.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: EventId,
    pub kind: EventKind,
    pub title: String,
    pub topic: String,
    pub summary: String,
    /// RFC 3339 UTC.
    pub scheduled_start: String,
    pub scheduled_end: String,
    pub form: EventForm,
    pub visibility: Visibility,
    pub status: EventStatus,
    /// Whether going live/ended follows the video publisher.
    pub follow_publisher: bool,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Set when an accidental end was undone.
    pub reopened_at: Option<String>,
    pub guests: Vec<Guest>,
    pub broadcasters: Vec<String>,
    pub moderators: Vec<String>,
    #[serde(skip)]
    pub scheduled_start_ms: i64,
    #[serde(skip)]
    pub scheduled_end_ms: i64,
    #[serde(skip)]
    pub started_ms: Option<i64>,
    #[serde(skip)]
    pub ended_ms: Option<i64>,
    #[serde(skip)]
    pub reopened_ms: Option<i64>,
}

/// The validated fields of a new or edited event.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub kind: EventKind,
    pub title: String,
    pub topic: String,
    pub summary: String,
    pub scheduled_start_ms: i64,
    pub scheduled_end_ms: i64,
    pub form: EventForm,
    pub visibility: Visibility,
    pub follow_publisher: bool,
    pub guests: Vec<Guest>,
    pub broadcasters: Vec<String>,
    pub moderators: Vec<String>,
}

/// The JSON of `POST /api/v1/events`; every field of `PATCH` is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub kind: Option<String>,
    pub title: Option<String>,
    pub topic: Option<String>,
    pub summary: Option<String>,
    pub scheduled_start: Option<String>,
    pub scheduled_end: Option<String>,
    pub form: Option<String>,
    pub visibility: Option<String>,
    pub follow_publisher: Option<bool>,
    pub guests: Option<Vec<Guest>>,
    pub broadcasters: Option<Vec<String>>,
    pub moderators: Option<Vec<String>>,
}

pub const MAX_TITLE: usize = 200;
pub const MAX_TOPIC: usize = 500;
pub const MAX_SUMMARY: usize = 10_000;
pub const MAX_GUESTS: usize = 50;

impl EventDraft {
    /// A new event: kind, title and the schedule are required.
    pub fn create(input: EventInput) -> Result<EventDraft, ApiError> {
        let kind = input
            .kind
            .as_deref()
            .ok_or_else(|| ApiError::validation("kind", "kind is required"))?;
        let kind = EventKind::parse(kind).ok_or_else(|| {
            ApiError::validation("kind", "kind must be interview, enforcement or draw")
        })?;
        let start = input.scheduled_start.as_deref().ok_or_else(|| {
            ApiError::validation("scheduled_start", "scheduled_start is required")
        })?;
        let end = input
            .scheduled_end
            .as_deref()
            .ok_or_else(|| ApiError::validation("scheduled_end", "scheduled_end is required"))?;
        let draft = EventDraft {
            kind,
            title: String::new(),
            topic: String::new(),
            summary: String::new(),
            scheduled_start_ms: parse_time("scheduled_start", start)?,
            scheduled_end_ms: parse_time("scheduled_end", end)?,
            form: EventForm::Video,
            visibility: Visibility::Public,
            follow_publisher: false,
            guests: Vec::new(),
            broadcasters: Vec::new(),
            moderators: Vec::new(),
        };
        if input.title.is_none() {
            return Err(ApiError::validation("title", "title is required"));
        }
        draft.apply(EventInput {
            kind: None,
            scheduled_start: None,
            scheduled_end: None,
            ..input
        })
    }

    /// The draft of an existing event, for editing.
    pub fn from_event(e: &Event) -> EventDraft {
        EventDraft {
            kind: e.kind,
            title: e.title.clone(),
            topic: e.topic.clone(),
            summary: e.summary.clone(),
            scheduled_start_ms: e.scheduled_start_ms,
            scheduled_end_ms: e.scheduled_end_ms,
            form: e.form,
            visibility: e.visibility,
            follow_publisher: e.follow_publisher,
            guests: e.guests.clone(),
            broadcasters: e.broadcasters.clone(),
            moderators: e.moderators.clone(),
        }
    }

    /// Applies the given fields and validates the result as a whole.
    pub fn apply(mut self, input: EventInput) -> Result<EventDraft, ApiError> {
        if let Some(kind) = input.kind {
            self.kind = EventKind::parse(&kind).ok_or_else(|| {
                ApiError::validation("kind", "kind must be interview, enforcement or draw")
            })?;
        }
        if let Some(title) = input.title {
            self.title = text("title", &title, 1, MAX_TITLE)?;
        }
        if let Some(topic) = input.topic {
            self.topic = text("topic", &topic, 0, MAX_TOPIC)?;
        }
        if let Some(summary) = input.summary {
            self.summary = text("summary", &summary, 0, MAX_SUMMARY)?;
        }
        if let Some(start) = input.scheduled_start {
            self.scheduled_start_ms = parse_time("scheduled_start", &start)?;
        }
        if let Some(end) = input.scheduled_end {
            self.scheduled_end_ms = parse_time("scheduled_end", &end)?;
        }
        if let Some(form) = input.form {
            self.form = EventForm::parse(&form)
                .ok_or_else(|| ApiError::validation("form", "form must be video or text"))?;
        }
        if let Some(v) = input.visibility {
            self.visibility = Visibility::parse(&v).ok_or_else(|| {
                ApiError::validation("visibility", "visibility must be public or unlisted")
            })?;
        }
        if let Some(f) = input.follow_publisher {
            self.follow_publisher = f;
        }
        if let Some(guests) = input.guests {
            if guests.len() > MAX_GUESTS {
                return Err(ApiError::validation(
                    "guests",
                    format!("at most {MAX_GUESTS} guests"),
                ));
            }
            self.guests = guests
                .into_iter()
                .enumerate()
                .map(|(i, g)| {
                    Ok(Guest {
                        name: text(&format!("guests[{i}].name"), &g.name, 1, 100)?,
                        title: text(&format!("guests[{i}].title"), &g.title, 0, 200)?,
                        organisation: text(
                            &format!("guests[{i}].organisation"),
                            &g.organisation,
                            0,
                            200,
                        )?,
                    })
                })
                .collect::<Result<_, ApiError>>()?;
        }
        if let Some(b) = input.broadcasters {
            self.broadcasters = usernames("broadcasters", b)?;
        }
        if let Some(m) = input.moderators {
            self.moderators = usernames("moderators", m)?;
        }
        if self.scheduled_end_ms <= self.scheduled_start_ms {
            return Err(ApiError::validation(
                "scheduled_end",
                "scheduled_end must be after scheduled_start",
            ));
        }
        Ok(self)
    }
}

fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let n = value.chars().count();
    if n < min {
        return Err(ApiError::validation(field, format!("{field} is required")));
    }
    if n > max {
        return Err(ApiError::validation(
            field,
            format!("{field} must have at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::validation(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn usernames(field: &str, names: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = names.into_iter().map(|n| n.trim().to_lowercase()).collect();
    if out.iter().any(|n| n.is_empty()) {
        return Err(ApiError::validation(
            field,
            format!("{field} contains an empty username"),
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn parse_time(field: &str, value: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::validation(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-06-18T09:30:00+08:00"),
            )
        })
}

pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> EventInput {
        EventInput {
            kind: Some("interview".into()),
            title: Some("  区长在线访谈 ".into()),
            scheduled_start: Some("2026-12-01T09:30:00+08:00".into()),
            scheduled_end: Some("2026-12-01T11:00:00+08:00".into()),
            guests: Some(vec![Guest {
                name: "王某".into(),
                title: "区长".into(),
                organisation: "区政府".into(),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn creates_with_defaults() {
        let d = EventDraft::create(input()).unwrap();
        assert_eq!(d.title, "区长在线访谈");
        assert_eq!(d.form, EventForm::Video);
        assert_eq!(d.visibility, Visibility::Public);
        assert_eq!(format_time(d.scheduled_start_ms), "2026-12-01T01:30:00Z");
    }

    #[test]
    fn errors_name_the_field() {
        let field = |e: ApiError| match e {
            ApiError::Validation { field, .. } => field.unwrap(),
            other => panic!("{other:?}"),
        };
        let mut i = input();
        i.kind = Some("party".into());
        assert_eq!(field(EventDraft::create(i).unwrap_err()), "kind");
        let mut i = input();
        i.scheduled_end = Some("2026-12-01T09:00:00+08:00".into());
        assert_eq!(field(EventDraft::create(i).unwrap_err()), "scheduled_end");
        let mut i = input();
        i.scheduled_start = Some("tomorrow".into());
        assert_eq!(field(EventDraft::create(i).unwrap_err()), "scheduled_start");
        let mut i = input();
        i.guests = Some(vec![Guest {
            name: "".into(),
            title: "".into(),
            organisation: "".into(),
        }]);
        assert_eq!(field(EventDraft::create(i).unwrap_err()), "guests[0].name");
        let mut i = input();
        i.title = Some("x".repeat(MAX_TITLE + 1));
        assert_eq!(field(EventDraft::create(i).unwrap_err()), "title");
    }

    #[test]
    fn ids_are_random_and_parse() {
        let a = EventId::generate();
        assert_eq!(a.as_str().len(), 12);
        assert_ne!(a, EventId::generate());
        assert!(EventId::parse(a.as_str()).is_some());
        assert!(EventId::parse("../etc").is_none());
    }
}
