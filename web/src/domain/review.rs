//! The review of applications (资格审核): which applications count, and which are in
//! conflict. Pure: stored review marks in, each application's status out.
//!
//! A second application for a child who already applied is kept, not refused (a refusal
//! told anyone whether a child had applied): applications that share a child's ID number
//! and are not rejected are all *in conflict* until the organiser rejects all but one (or
//! a parent withdraws). A conflict spreads to every member of a group of twins/multiples,
//! which is reviewed as one. Only *verified* applications enter the announced leaves.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// What the organiser recorded for an application (`draw_applications.review`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pending,
    Verified,
    Rejected,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Pending => "pending",
            Mark::Verified => "verified",
            Mark::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Mark> {
        [Mark::Pending, Mark::Verified, Mark::Rejected]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// An application's status as organisers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Conflict,
    Verified,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Conflict,
        Status::Verified,
        Status::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Conflict => "conflict",
            Status::Verified => "verified",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// What the parent is told: a conflict is the organiser's business (telling the
    /// parent would tell whoever holds a receipt that someone else applied for the same
    /// child), so it reads as still under review.
    pub fn for_parent(self) -> Status {
        match self {
            Status::Conflict => Status::Pending,
            other => other,
        }
    }
}

/// The review facts of one stored application.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub app: String,
    pub child_key: String,
    pub group: String,
    pub mark: Mark,
}

/// Each application's status, and for those in conflict the other applications they
/// conflict with (same child, not rejected). `review`: the draw's setting; without a
/// review step every application that is not rejected or in conflict counts as verified.
pub fn statuses(rows: &[Reviewed], review: bool) -> HashMap<String, (Status, Vec<String>)> {
    let mut by_child: HashMap<&str, Vec<&str>> = HashMap::new();
    for row in rows.iter().filter(|r| r.mark != Mark::Rejected) {
        by_child.entry(&row.child_key).or_default().push(&row.app);
    }
    let others = |row: &Reviewed| -> Vec<String> {
        by_child
            .get(row.child_key.as_str())
            .map(|apps| {
                apps.iter()
                    .filter(|a| **a != row.app)
                    .map(|a| (*a).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Groups with a member in conflict: the whole group is.
    let mut group_conflicts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.mark != Mark::Rejected) {
        let with = others(row);
        if !row.group.is_empty() && !with.is_empty() {
            group_conflicts.entry(&row.group).or_default().extend(with);
        }
    }
    rows.iter()
        .map(|row| {
            let status = match row.mark {
                Mark::Rejected => (Status::Rejected, Vec::new()),
                mark => {
                    let mut with = others(row);
                    if let Some(group) = group_conflicts.get(row.group.as_str()) {
                        with.extend(group.iter().cloned());
                        with.sort();
                        with.dedup();
                    }
                    if !with.is_empty() {
                        (Status::Conflict, with)
                    } else if mark == Mark::Verified || !review {
                        (Status::Verified, Vec::new())
                    } else {
                        (Status::Pending, Vec::new())
                    }
                }
            };
            (row.app.clone(), status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(app: &str, child: &str, group: &str, mark: Mark) -> Reviewed {
        Reviewed {
            app: app.into(),
            child_key: child.into(),
            group: group.into(),
            mark,
        }
    }

    #[test]
    fn duplicates_conflict_until_all_but_one_are_rejected() {
        let rows = [
            row("A", "k1", "", Mark::Verified),
            row("B", "k1", "", Mark::Pending),
            row("C", "k2", "", Mark::Pending),
        ];
        let s = statuses(&rows, true);
        assert_eq!(s["A"], (Status::Conflict, vec!["B".to_owned()]));
        assert_eq!(s["B"], (Status::Conflict, vec!["A".to_owned()]));
        assert_eq!(s["C"].0, Status::Pending);
        let rows = [
            row("A", "k1", "", Mark::Verified),
            row("B", "k1", "", Mark::Rejected),
        ];
        let s = statuses(&rows, true);
        assert_eq!(s["A"].0, Status::Verified);
        assert_eq!(s["B"].0, Status::Rejected);
    }

    #[test]
    fn without_review_pending_counts_as_verified_but_conflicts_remain() {
        let rows = [
            row("A", "k1", "", Mark::Pending),
            row("B", "k1", "", Mark::Pending),
            row("C", "k2", "", Mark::Pending),
        ];
        let s = statuses(&rows, false);
        assert_eq!(s["A"].0, Status::Conflict);
        assert_eq!(s["C"].0, Status::Verified);
    }

    #[test]
    fn a_conflict_spreads_to_the_whole_group() {
        let rows = [
            row("T1", "k1", "g", Mark::Pending),
            row("T2", "k2", "g", Mark::Pending),
            row("X", "k2", "", Mark::Pending),
        ];
        let s = statuses(&rows, true);
        assert_eq!(s["T1"], (Status::Conflict, vec!["X".to_owned()]));
        assert_eq!(s["T2"], (Status::Conflict, vec!["X".to_owned()]));
        assert_eq!(s["X"], (Status::Conflict, vec!["T2".to_owned()]));
        assert_eq!(Status::Conflict.for_parent(), Status::Pending);
    }
}
