//! `gongkai draw check-receipt`.

use std::path::Path;

use lottery::receipt::check_receipt;
use lottery::{AppCode, ChildId, ChildName, Salt, TrustedKeys};

use super::verify::{PhaseClock, report_failure, verify_file};
use super::{Failure, files, parse_public_key};

pub(crate) fn run(
    file: &Path,
    app: &str,
    salt: &str,
    child_id: &str,
    child_name: &str,
    organiser_key: Option<&str>,
) -> Result<(), Failure> {
    // Receipt data is checked before the (possibly large) transcript is read. Errors never
    // repeat the ID number or name.
    let app = AppCode::parse(app.trim()).map_err(|e| Failure::Usage(format!("--app: {e}")))?;
    let salt = Salt::parse(&salt.trim().to_ascii_lowercase())
        .map_err(|e| Failure::Usage(format!("--salt: {e}")))?;
    let child_id =
        ChildId::parse(child_id.trim()).map_err(|e| Failure::Usage(format!("--child-id: {e}")))?;
    let child_name =
        ChildName::parse(child_name).map_err(|e| Failure::Usage(format!("--child-name: {e}")))?;
    let trusted = TrustedKeys {
        organiser: parse_public_key("--organiser-key", organiser_key)?,
        notary: None,
    };
    let bytes = files::read_large(file)?;
    let (signed, summary) = verify_file(&bytes, &trusted, &mut PhaseClock::new(false))
        .map_err(|f| report_failure(&f))?;
    let transcript = &signed.transcript;
    let result = check_receipt(transcript, &app, &salt, &child_id, &child_name)
        .map_err(|e| Failure::Invalid(format!("receipt does not match: {e}")))?;

    println!(
        "leaf confirmed: application {} is in the verified draw {}",
        result.app, summary.draw_id
    );
    if result.unit_size > 1 {
        println!(
            "placed together with {} other child(ren) as unit {}",
            result.unit_size - 1,
            result.unit
        );
    }
    match result.lottery_number {
        Some(number) => println!("lottery number: {number} of {}", summary.units),
        None => println!("lottery number: none"),
    }
    match &result.admitted {
        Some((kg, choice)) => {
            let name = kindergarten_name(transcript, kg);
            println!("admitted:       {kg} {name} (choice {choice})");
        }
        None => println!("admitted:       not admitted"),
    }
    for (kg, choice, position) in &result.waitlists {
        let name = kindergarten_name(transcript, kg);
        println!("waitlist:       {kg} {name} (choice {choice}): position {position}");
    }
    Ok(())
}

fn kindergarten_name(transcript: &lottery::Transcript, code: &lottery::KindergartenCode) -> String {
    let announcement = &transcript.announcement;
    announcement
        .kindergarten_index(code)
        .map(|i| format!("\"{}\"", announcement.kindergartens[i].name))
        .unwrap_or_default()
}
