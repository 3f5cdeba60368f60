//! CSV that the server writes. A spreadsheet opens a cell that starts with `=`, `+`, `-`,
//! `@`, a tab or a carriage return as a formula (CSV or formula injection: a child's name
//! `=HYPERLINK(...)` in an export becomes a link that runs on a click), so every cell of a
//! CSV the server writes goes through [`cell`], which prefixes such a cell with `'`:
//! spreadsheets show it as the text that was typed.
//!
//! Names are stored exactly as typed (they are part of the child's identity commitment);
//! neutralising happens only on the way out, into a spreadsheet. Never apply it to files
//! whose bytes are defined by `gongkai-draw/1` or read by the notary's tools (the signed
//! announcement and transcript, the private application file): they are canonical JSON,
//! hashed and signed byte for byte, and none of them is CSV.
//!
//! Today the server writes no CSV (the application import is read, never written); the
//! test below keeps any future CSV writer in this crate on this path.

use std::borrow::Cow;

/// The characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One cell, safe to open in a spreadsheet: unchanged, or with a leading `'` when it
/// starts like a formula.
pub fn cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Every cell of a record through [`cell`].
pub fn record<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<Cow<'a, str>> {
    fields.into_iter().map(cell).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        for (input, output) in [
            (
                "=HYPERLINK(\"http://evil.example\",\"x\")",
                "'=HYPERLINK(\"http://evil.example\",\"x\")",
            ),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("=", "'="),
        ] {
            assert_eq!(cell(input), output, "{input:?}");
        }
    }

    #[test]
    fn other_cells_are_unchanged() {
        for text in [
            "",
            "王小明",
            "KG-01:1;KG-03:2",
            "a=b",
            " =1",
            "'=1",
            "11010519491231002X",
        ] {
            assert!(
                matches!(cell(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
        assert_eq!(
            record(["王小明", "=1+1", "KG-01"]),
            ["王小明", "'=1+1", "KG-01"]
        );
    }

    /// Every CSV this crate writes goes through this module: no other source file may
    /// build a CSV writer or answer with `text/csv`.
    #[test]
    fn no_csv_is_written_around_the_neutraliser() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(
            files.len() > 10,
            "found the sources under {}",
            root.display()
        );
        let writers = [
            "csv::Writer",
            "csv::WriterBuilder",
            "(header::CONTENT_TYPE, \"text/csv",
        ];
        for file in files.iter().filter(|f| !f.ends_with("csv_out.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for writer in writers {
                assert!(
                    !text.contains(writer),
                    "{} writes CSV ({writer}) without csv_out::cell",
                    file.display()
                );
            }
        }
    }
}
