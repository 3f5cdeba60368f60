//! Synthetic draws for demos, tests and benchmarks. Deterministic for a given RNG.

use rand_core::{CryptoRng, RngCore};

use crate::announcement::{
    Announcement, Beacon, BeaconKind, Kindergarten, Mechanism, Multiples, SpecTag, Witness,
    WitnessSecret,
};
use crate::child::{ChildId, ChildName, Salt};
use crate::choice::{Choice, Choices, MAX_CHOICES};
use crate::commit::commit;
use crate::draw::DrawInputs;
use crate::error::DrawError;
use crate::ids::DrawTime;
use crate::ids::{AppCode, DrawId, Group, KindergartenCode};
use crate::key_file::KeyFile;
use crate::leaf::Application;
use crate::private::PrivateFile;
use crate::signature::{Role, Signature, Signed};
use crate::transcript::{SignedAnnouncement, SignedTranscript};

/// The shape of a synthetic draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulationParams {
    pub applications: usize,
    pub kindergartens: usize,
    /// Choices per application (capped at the number of kindergartens and at 8).
    pub choices: usize,
    /// Per mille of applications that belong to twins (pairs) or triplets.
    pub multiples_per_mille: u32,
    /// Seats in total, per mille of applications.
    pub seats_per_mille: u32,
}

impl Default for SimulationParams {
    fn default() -> Self {
        SimulationParams {
            applications: 1000,
            kindergartens: 10,
            choices: 3,
            multiples_per_mille: 50,
            seats_per_mille: 900,
        }
    }
}

/// Kindergartens and applications of a synthetic draw.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub kindergartens: Vec<Kindergarten>,
    pub applications: Vec<Application>,
}

/// Makes kindergartens with unequal sizes and applications whose first choices favour the
/// lower-numbered kindergartens, so that some are oversubscribed and rejected units move on.
pub fn synthetic<R: CryptoRng + RngCore>(params: SimulationParams, rng: &mut R) -> Synthetic {
    let kg_count = params.kindergartens.max(1);
    let width = kg_count.to_string().len().max(2);
    let total_seats = params.applications as u64 * u64::from(params.seats_per_mille) / 1000;
    let mean = total_seats / kg_count as u64;
    let kindergartens: Vec<Kindergarten> = (0..kg_count)
        .map(|i| {
            let code = format!("KG-{:0width$}", i + 1);
            // Seats between half and one and a half times the mean.
            let seats = if mean == 0 {
                0
            } else {
                mean / 2 + rng.next_u64() % (mean + 1)
            };
            Kindergarten {
                // Invariant: "KG-" and digits are valid code characters, and 32 is enough.
                code: KindergartenCode::parse(&code)
                    .expect("KG- and up to 20 digits is a valid code"),
                name: format!("Kindergarten No. {}", i + 1),
                seats,
            }
        })
        .collect();
    let choice_count = params.choices.clamp(1, MAX_CHOICES.min(kg_count));
    let codes = app_codes(params.applications, rng);
    let mut applications = Vec::with_capacity(params.applications);
    let mut group_number = 0;
    while applications.len() < params.applications {
        let remaining = params.applications - applications.len();
        let roll = rng.next_u64() % 1000;
        let size = if remaining >= 2 && roll < u64::from(params.multiples_per_mille) / 2 {
            // Pairs, with one triplet in fifty groups.
            if remaining >= 3 && rng.next_u64().is_multiple_of(50) {
                3
            } else {
                2
            }
        } else {
            1
        };
        let choices = random_choices(&kindergartens, choice_count, rng);
        let group = if size > 1 {
            group_number += 1;
            Group::new(format!("T{group_number:06}"))
        } else {
            Group::none()
        };
        for _ in 0..size {
            let index = applications.len();
            applications.push(Application {
                app: codes[index],
                child_id: synthetic_child_id(index),
                child_name: synthetic_name(rng),
                salt: Salt::generate(rng),
                choices: choices.clone(),
                group: group.clone(),
            });
        }
    }
    Synthetic {
        kindergartens,
        applications,
    }
}

/// `count` witnesses with fresh secrets; returns the public entries and the secrets.
pub fn witnesses<R: CryptoRng + RngCore>(
    count: usize,
    draw_id: &DrawId,
    rng: &mut R,
) -> (Vec<Witness>, Vec<WitnessSecret>) {
    const ROLES: [&str; 4] = [
        "notary",
        "parent representative",
        "kindergarten representative",
        "supervisor",
    ];
    (0..count)
        .map(|i| {
            let secret = WitnessSecret::generate(rng);
            let witness = Witness {
                name: format!("Witness {}", i + 1),
                role: ROLES[i % ROLES.len()].to_owned(),
                commitment: secret.commitment(draw_id),
            };
            (witness, secret)
        })
        .unzip()
}

/// Distinct application codes.
fn app_codes<R: CryptoRng + RngCore>(count: usize, rng: &mut R) -> Vec<AppCode> {
    let mut codes: Vec<AppCode> = (0..count).map(|_| AppCode::generate(rng)).collect();
    loop {
        codes.sort_unstable();
        codes.dedup();
        if codes.len() == count {
            break;
        }
        codes.extend((codes.len()..count).map(|_| AppCode::generate(rng)));
    }
    // Shuffle back out of sorted order so that group members are not neighbours by code.
    for i in (1..codes.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        codes.swap(i, j);
    }
    codes
}

/// Popular kindergartens first: index `K * u^2` for uniform `u` puts half of all picks on
/// the first quarter.
fn random_choices<R: RngCore>(
    kindergartens: &[Kindergarten],
    count: usize,
    rng: &mut R,
) -> Choices {
    let mut choices: Vec<Choice> = Vec::with_capacity(count);
    while choices.len() < count {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let index = ((kindergartens.len() as f64) * u * u) as usize;
        let kg = kindergartens[index.min(kindergartens.len() - 1)].code;
        if choices.iter().any(|choice| choice.kg == kg) {
            continue;
        }
        let class = match rng.next_u64() % 10 {
            0..=4 => 1,
            5..=7 => 2,
            _ => 3,
        };
        choices.push(Choice { kg, class });
    }
    // Invariant: 1 to 8 distinct kindergartens with classes 1 to 3.
    Choices::new(choices).expect("distinct kindergartens, at most 8, classes 1 to 3")
}

/// A unique, valid ID number per index: region, a birth date in 2021-2023, a sequence
/// number, and the check digit.
fn synthetic_child_id(index: usize) -> ChildId {
    let day_index = index / 1000 % 1008;
    let region = 110101 + index / 1_008_000;
    let year = 2021 + day_index / 336;
    let month = day_index % 336 / 28 + 1;
    let day = day_index % 28 + 1;
    let sequence = index % 1000;
    let first17 = format!("{region:06}{year:04}{month:02}{day:02}{sequence:03}");
    // Invariant: 17 ASCII digits by construction.
    ChildId::with_check_digit(&first17).expect("17 digits by construction")
}

fn synthetic_name<R: RngCore>(rng: &mut R) -> ChildName {
    const FAMILY: [&str; 12] = [
        "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
    ];
    const GIVEN: [&str; 16] = [
        "明", "华", "丽", "军", "芳", "伟", "静", "磊", "婷", "洋", "杰", "欣", "宇", "涵", "晨",
        "悦",
    ];
    let bits = rng.next_u64() as usize;
    let mut name = String::from(FAMILY[bits % FAMILY.len()]);
    name.push_str(GIVEN[(bits >> 8) % GIVEN.len()]);
    if bits >> 16 & 1 == 1 {
        name.push_str(GIVEN[(bits >> 20) % GIVEN.len()]);
    }
    // Invariant: 2 or 3 characters, no white space.
    ChildName::parse(&name).expect("2 or 3 CJK characters are a valid name")
}

/// A complete synthetic draw, as the organiser would hold it after signing.
#[derive(Debug)]
pub struct DemoDraw {
    pub private: PrivateFile,
    pub signed_announcement: SignedAnnouncement,
    pub signed: SignedTranscript,
    pub organiser: KeyFile,
}

/// The choices of a synthetic draw beyond its shape.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub draw_id: DrawId,
    pub mechanism: Mechanism,
    pub multiples: Multiples,
    pub witnesses: usize,
    pub beacon_text: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            draw_id: DrawId::parse("DEMO-2026").expect("a valid literal draw id"),
            mechanism: Mechanism::DeferredAcceptance,
            multiples: Multiples::WholeOrSkip,
            witnesses: 3,
            beacon_text: None,
        }
    }
}

/// Runs a whole synthetic draw: applications, commitment, announcement, witnesses, draw and
/// organiser signatures. For tests and benchmarks; the CLI runs the same steps one by one to
/// time them.
pub fn demo_draw<R: CryptoRng + RngCore>(
    params: SimulationParams,
    options: &DemoOptions,
    rng: &mut R,
) -> Result<DemoDraw, DrawError> {
    let Synthetic {
        kindergartens,
        mut applications,
    } = synthetic(params, rng);
    let organiser = KeyFile::generate(rng);
    let committed = commit(&mut applications)?;
    let (witnesses, secrets) = witnesses(options.witnesses, &options.draw_id, rng);
    let announcement = Announcement {
        spec: SpecTag,
        draw_id: options.draw_id.clone(),
        title: format!("Synthetic draw {}", options.draw_id),
        draw_time: DrawTime::parse("2026-06-18T09:30:00Z")?,
        kindergartens,
        mechanism: options.mechanism,
        multiples: options.multiples,
        applications: committed.tree_head,
        witnesses,
        beacon: options.beacon_text.as_ref().map(|_| Beacon {
            kind: BeaconKind::PublicText,
            source: "the published text of a named public lottery issue".to_owned(),
        }),
    };
    let announcement_signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Announcement,
        &announcement.hash(),
    );
    let signed_announcement = SignedAnnouncement {
        announcement: announcement.clone(),
        signatures: vec![announcement_signature.clone()],
    };
    let drawn = crate::draw::run_observed(
        DrawInputs {
            announcement,
            announcement_signatures: vec![announcement_signature],
            leaves: committed.leaves,
            reveals: secrets,
            beacon_text: options.beacon_text.clone(),
        },
        &mut |_| {},
    )?;
    let transcript = drawn.transcript;
    let signature = Signature::sign(
        organiser.signing_key(),
        Role::Organiser,
        Signed::Transcript,
        &drawn.hash,
    );
    Ok(DemoDraw {
        private: PrivateFile::new(options.draw_id.clone(), applications),
        signed_announcement,
        signed: SignedTranscript {
            transcript,
            signatures: vec![signature],
        },
        organiser,
    })
}
