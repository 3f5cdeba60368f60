//! Application import from CSV.
//!
//! The header is exactly `child_id,child_name,choices,group`; `choices` lists
//! `code:class` pairs separated by `;` in order of preference (`KG-01:1;KG-03:2`); `group`
//! is empty or shared by twins/multiples. UTF-8, with or without a byte-order mark. Every bad
//! row is reported with its line number, field and a stable code, and nothing is imported
//! while any row is bad. Names follow the rule for new names ([`ChildName::parse_new`]).
//! [`check_csv`] also hands the caller every ID number that parsed, so that problems only
//! the caller can see (a child who already applied) join the same report. Application
//! codes and salts are drawn from the caller's CSPRNG.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand_core::{CryptoRng, RngCore};

use crate::announcement::Kindergarten;
use crate::child::{ChildError, ChildId, ChildName, Salt};
use crate::choice::{Choice, Choices};
use crate::ids::{AppCode, Group, KindergartenCode};
use crate::leaf::Application;

/// The required header.
pub const CSV_HEADER: [&str; 4] = ["child_id", "child_name", "choices", "group"];

/// One problem in the CSV: where, which field, what. Never quotes a child's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file where the row starts.
    pub line: u64,
    /// `header`, `row`, or one of the column names.
    pub field: &'static str,
    /// What is wrong, for programs and translations: `header`, `csv`, `field_count`,
    /// `utf8`, `child_id_shape`, `child_id_check_digit`, `child_id_repeated`,
    /// `child_name_length`, `child_name_invisible`, `choices`, `group_single`,
    /// `group_choices` (and the caller's own, e.g. `already_applied`).
    pub code: &'static str,
    pub message: String,
}

impl RowError {
    /// Sorts problems by line, then by column (`header` and `row` first).
    pub fn sort(errors: &mut [RowError]) {
        errors.sort_by_key(|e| {
            (
                e.line,
                CSV_HEADER.iter().position(|column| *column == e.field),
            )
        });
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, {}: {}", self.line, self.field, self.message)
    }
}

/// Every problem found in a CSV file (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportErrors(pub Vec<RowError>);

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} problem(s) in the application file, nothing imported",
            self.0.len()
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// A row that parsed, before codes and salts are drawn.
struct Row {
    line: u64,
    child_id: ChildId,
    child_name: ChildName,
    choices: Choices,
    group: Group,
}

/// Imports applications. `kindergartens` are the ones the draw announces: a choice of any
/// other code is an error.
pub fn import_csv<R: CryptoRng + RngCore>(
    input: &[u8],
    kindergartens: &[Kindergarten],
    rng: &mut R,
) -> Result<Vec<Application>, ImportErrors> {
    import_csv_with_lines(input, kindergartens, rng).map(|rows| {
        rows.into_iter()
            .map(|(_, application)| application)
            .collect()
    })
}

/// [`import_csv`], keeping each application's line number.
pub fn import_csv_with_lines<R: CryptoRng + RngCore>(
    input: &[u8],
    kindergartens: &[Kindergarten],
    rng: &mut R,
) -> Result<Vec<(u64, Application)>, ImportErrors> {
    check_csv(input, kindergartens).into_applications(rng)
}

/// A checked CSV file: the rows that parsed and every problem found so far.
pub struct CheckedCsv {
    rows: Vec<Row>,
    child_ids: Vec<(u64, ChildId)>,
    errors: Vec<RowError>,
}

/// Checks a CSV file without drawing codes: every problem of the file, and every ID
/// number that parsed (also on rows with other problems).
pub fn check_csv(input: &[u8], kindergartens: &[Kindergarten]) -> CheckedCsv {
    parse_rows(input, kindergartens)
}

impl CheckedCsv {
    /// Every row whose ID number parsed, with its line (for the caller's own checks, such
    /// as children who already applied).
    pub fn child_ids(&self) -> &[(u64, ChildId)] {
        &self.child_ids
    }

    /// Adds problems the caller found, to be reported with the file's own.
    pub fn add_errors(&mut self, errors: impl IntoIterator<Item = RowError>) {
        self.errors.extend(errors);
    }

    /// The applications, codes and salts drawn from `rng`; or every problem, sorted by
    /// line and column.
    pub fn into_applications<R: CryptoRng + RngCore>(
        self,
        rng: &mut R,
    ) -> Result<Vec<(u64, Application)>, ImportErrors> {
        let mut errors = self.errors;
        if !errors.is_empty() {
            RowError::sort(&mut errors);
            return Err(ImportErrors(errors));
        }
        Ok(draw_codes(self.rows, rng))
    }
}

fn draw_codes<R: CryptoRng + RngCore>(rows: Vec<Row>, rng: &mut R) -> Vec<(u64, Application)> {
    let mut used = BTreeSet::new();
    rows.into_iter()
        .map(|row| {
            let app = loop {
                let code = AppCode::generate(rng);
                if used.insert(code) {
                    break code;
                }
            };
            (
                row.line,
                Application {
                    app,
                    child_id: row.child_id,
                    child_name: row.child_name,
                    salt: Salt::generate(rng),
                    choices: row.choices,
                    group: row.group,
                },
            )
        })
        .collect()
}

fn parse_rows(input: &[u8], kindergartens: &[Kindergarten]) -> CheckedCsv {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let known: BTreeSet<KindergartenCode> = kindergartens.iter().map(|kg| kg.code).collect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut seen_ids: BTreeMap<ChildId, u64> = BTreeMap::new();
    let mut child_ids = Vec::new();
    let mut header_seen = false;
    let mut last_line = 0;
    for record in reader.byte_records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(last_line + 1, |p| p.line());
                errors.push(RowError {
                    line,
                    field: "row",
                    code: "csv",
                    message: format!("not valid CSV: {}", csv_problem(&error)),
                });
                break; // the reader cannot resynchronise reliably after a syntax error
            }
        };
        let line = record.position().map_or(last_line + 1, |p| p.line());
        last_line = line;
        if !header_seen {
            header_seen = true;
            let header: Vec<&[u8]> = record.iter().collect();
            let expected: Vec<&[u8]> = CSV_HEADER.iter().map(|h| h.as_bytes()).collect();
            if header != expected {
                errors.push(RowError {
                    line,
                    field: "header",
                    code: "header",
                    message: format!("expected the header {}", CSV_HEADER.join(",")),
                });
                return CheckedCsv {
                    rows,
                    child_ids,
                    errors,
                };
            }
            continue;
        }
        if record.len() != CSV_HEADER.len() {
            errors.push(RowError {
                line,
                field: "row",
                code: "field_count",
                message: format!(
                    "expected {} fields, found {}",
                    CSV_HEADER.len(),
                    record.len()
                ),
            });
            continue;
        }
        let mut fields = [""; 4];
        let mut row_ok = true;
        for (i, raw) in record.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(text) => fields[i] = text,
                Err(_) => {
                    errors.push(RowError {
                        line,
                        field: CSV_HEADER[i],
                        code: "utf8",
                        message: "not valid UTF-8".into(),
                    });
                    row_ok = false;
                }
            }
        }
        if !row_ok {
            continue;
        }
        let mut error = |field: &'static str, code: &'static str, message: String| {
            errors.push(RowError {
                line,
                field,
                code,
                message,
            })
        };
        let child_id = ChildId::parse(fields[0].trim())
            .map_err(|e| error("child_id", child_error_code(&e), e.to_string()));
        let child_name = ChildName::parse_new(fields[1])
            .map_err(|e| error("child_name", child_error_code(&e), e.to_string()));
        let choices = parse_choices(fields[2], &known)
            .map_err(|message| error("choices", "choices", message));
        let group = Group::new(fields[3].trim());
        if let Ok(child_id) = &child_id {
            child_ids.push((line, child_id.clone()));
            if let Some(first) = seen_ids.get(child_id) {
                error(
                    "child_id",
                    "child_id_repeated",
                    format!("the same ID number as line {first}"),
                );
            } else {
                seen_ids.insert(child_id.clone(), line);
            }
        }
        if let (Ok(child_id), Ok(child_name), Ok(choices)) = (child_id, child_name, choices) {
            rows.push(Row {
                line,
                child_id,
                child_name,
                choices,
                group,
            });
        }
    }
    if !header_seen {
        errors.push(RowError {
            line: 1,
            field: "header",
            code: "header",
            message: "the file is empty".into(),
        });
    }
    check_groups(&rows, &mut errors);
    CheckedCsv {
        rows,
        child_ids,
        errors,
    }
}

fn child_error_code(error: &ChildError) -> &'static str {
    match error {
        ChildError::IdShape => "child_id_shape",
        ChildError::IdCheckDigit => "child_id_check_digit",
        ChildError::NameLength => "child_name_length",
        ChildError::NameInvisible => "child_name_invisible",
        ChildError::Salt(_) => "salt",
    }
}

/// `KG-01:1;KG-03:2`, white space around the parts allowed, a trailing `;` tolerated.
fn parse_choices(text: &str, known: &BTreeSet<KindergartenCode>) -> Result<Choices, String> {
    let mut choices = Vec::new();
    let entries: Vec<&str> = text.trim().trim_end_matches(';').split(';').collect();
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let Some((code, class)) = entry.split_once(':') else {
            return Err(format!(
                "choice {n} must look like KG-01:1 (kindergarten code, colon, class)"
            ));
        };
        let kg = KindergartenCode::parse(code.trim()).map_err(|e| format!("choice {n}: {e}"))?;
        if !known.contains(&kg) {
            return Err(format!("choice {n}: kindergarten {kg} is not in this draw"));
        }
        let class: u64 = class
            .trim()
            .parse()
            .map_err(|_| format!("choice {n}: class must be a whole number from 1"))?;
        choices.push(Choice { kg, class });
    }
    Choices::new(choices).map_err(|e| e.to_string())
}

/// Every group has at least two members, all with the same choices.
fn check_groups(rows: &[Row], errors: &mut Vec<RowError>) {
    let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|row| !row.group.is_none()) {
        groups.entry(row.group.as_str()).or_default().push(row);
    }
    for (name, members) in groups {
        if members.len() < 2 {
            errors.push(RowError {
                line: members[0].line,
                field: "group",
                code: "group_single",
                message: format!(
                    "group {name:?} has only this member; twins and multiples share a group"
                ),
            });
            continue;
        }
        for member in &members[1..] {
            if member.choices != members[0].choices {
                errors.push(RowError {
                    line: member.line,
                    field: "choices",
                    code: "group_choices",
                    message: format!(
                        "must equal the choices of line {} (same group {name:?})",
                        members[0].line
                    ),
                });
            }
        }
    }
}

fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => "malformed quoting or record".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn kgs() -> Vec<Kindergarten> {
        ["KG-01", "KG-02", "KG-03"]
            .map(|code| Kindergarten {
                code: KindergartenCode::parse(code).unwrap(),
                name: code.into(),
                seats: 2,
            })
            .to_vec()
    }

    fn import(text: &str) -> Result<Vec<Application>, ImportErrors> {
        import_csv(
            text.as_bytes(),
            &kgs(),
            &mut ChaCha20Rng::from_seed([3; 32]),
        )
    }

    #[test]
    fn good_file_with_bom_imports() {
        let text = "\u{feff}child_id,child_name,choices,group\n\
                    11010519491231002X,王小明,KG-01:1;KG-03:2,\n\
                    110105201901010016, Ann ,KG-02:1,t1\n\
                    110105201901010032,Bo,KG-02:1,t1\n";
        let apps = import(text).unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0].choices.as_slice().len(), 2);
        assert_eq!(apps[1].child_name.as_str(), "Ann");
        assert_eq!(apps[1].group.as_str(), "t1");
        assert_ne!(apps[0].app, apps[1].app);
    }

    #[test]
    fn every_bad_row_is_reported_and_nothing_imported() {
        let text = "child_id,child_name,choices,group\n\
                    11010519491231002X,A,KG-01:1,\n\
                    110105194912310021,B,KG-01:1,\n\
                    11010519491231002x,C,KG-09:1,\n\
                    110105201901010016,,KG-01:0;KG-01:1,\n\
                    110105201901010016,E,KG-01:1\n\
                    110105201901010032,F,KG-01:1,solo\n";
        let errors = import(text).unwrap_err().0;
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(
            found,
            [
                (3, "child_id"),
                (4, "child_id"),
                (4, "choices"),
                (5, "child_name"),
                (5, "choices"),
                (6, "row"),
                (7, "group"),
            ]
        );
        assert!(
            errors[1].message.contains("line 2"),
            "{}",
            errors[1].message
        );
        assert!(!errors.iter().any(|e| e.message.contains("110105")));
    }

    #[test]
    fn names_of_nothing_visible_are_refused_and_formulas_kept_as_text() {
        // Issue 15 item 17. A formula is a name like any other here: it is data, stored
        // as typed; it is neutralised where a CSV is written (`web::csv_out`).
        let text = "child_id,child_name,choices,group\n\
                    11010519491231002X,\"\u{0}\u{202E}\u{200B}\",KG-01:1,\n\
                    110105201901010016,王\u{200D}明,KG-01:1,\n\
                    110105201901010032,\"=HYPERLINK(\"\"http://x\"\",\"\"x\"\")\",KG-01:1,\n";
        let checked = check_csv(text.as_bytes(), &kgs());
        assert_eq!(
            checked.child_ids().len(),
            3,
            "every ID that parsed is handed out"
        );
        let errors = checked
            .into_applications(&mut ChaCha20Rng::from_seed([3; 32]))
            .unwrap_err()
            .0;
        let found: Vec<(u64, &str, &str)> =
            errors.iter().map(|e| (e.line, e.field, e.code)).collect();
        assert_eq!(
            found,
            [
                (2, "child_name", "child_name_invisible"),
                (3, "child_name", "child_name_invisible"),
            ]
        );
    }

    #[test]
    fn the_callers_problems_join_the_report() {
        let text = "child_id,child_name,choices,group\n\
                    11010519491231002X,A,KG-09:1,\n\
                    110105201901010016,B,KG-01:1,\n";
        let mut checked = check_csv(text.as_bytes(), &kgs());
        let lines: Vec<u64> = checked.child_ids().iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3], "also the ID of a row with another problem");
        checked.add_errors(
            checked
                .child_ids()
                .to_vec()
                .into_iter()
                .map(|(line, _)| RowError {
                    line,
                    field: "child_id",
                    code: "already_applied",
                    message: "already applied".into(),
                }),
        );
        let errors = checked
            .into_applications(&mut ChaCha20Rng::from_seed([3; 32]))
            .unwrap_err()
            .0;
        let found: Vec<(u64, &str, &str)> =
            errors.iter().map(|e| (e.line, e.field, e.code)).collect();
        assert_eq!(
            found,
            [
                (2, "child_id", "already_applied"),
                (2, "choices", "choices"),
                (3, "child_id", "already_applied"),
            ]
        );
    }

    #[test]
    fn header_must_match() {
        let errors = import("id,name,choices,group\n").unwrap_err().0;
        assert_eq!((errors[0].line, errors[0].field), (1, "header"));
        assert_eq!(import("").unwrap_err().0[0].field, "header");
    }

    #[test]
    fn group_members_need_identical_choices() {
        let text = "child_id,child_name,choices,group\n\
                    110105201901010016,A,KG-01:1;KG-02:1,g\n\
                    110105201901010032,B,KG-02:1;KG-01:1,g\n";
        let errors = import(text).unwrap_err().0;
        assert_eq!((errors[0].line, errors[0].field), (3, "choices"));
    }
}
