//! Running a draw: from announcement, leaves, reveals and beacon to the outcome. The same
//! code serves the organiser (who produces the transcript) and every verifier (who recomputes
//! it), so the two cannot drift apart.

use crate::allocation::{Pick, Units, allocate};
use crate::announcement::{Announcement, Kindergarten, SpecTag, WitnessSecret};
use crate::check::{Check, CheckFailure};
use crate::hash::Digest;
use crate::ids::{AppCode, Group, KindergartenCode};
use crate::leaf::{Leaf, leaves_json_with};
use crate::merkle::tree_hash;
use crate::parallel::{Join, Sequential};
use crate::seed::{lottery_order, seed};
use crate::signature::{Role, Signature, Signed};
use crate::transcript::{CanonicalTranscript, Placement, Transcript};

/// What the organiser brings to the draw.
#[derive(Debug, Clone)]
pub struct DrawInputs {
    pub announcement: Announcement,
    pub announcement_signatures: Vec<Signature>,
    /// Every leaf, ordered by `app`.
    pub leaves: Vec<Leaf>,
    /// Every witness's secret, in the order of `announcement.witnesses`.
    pub reveals: Vec<WitnessSecret>,
    /// The beacon text exactly as published, when the announcement names a beacon.
    pub beacon_text: Option<String>,
}

/// Runs the draw: checks the inputs as a verifier would (every check of spec section 8 that
/// does not concern the transcript's own signatures), then computes the seed, the lottery,
/// the allocation and the waitlists.
pub fn run(inputs: DrawInputs) -> Result<Transcript, CheckFailure> {
    run_observed(inputs, &mut |_| {}).map(|drawn| drawn.transcript)
}

/// A transcript together with its canonical JSON and hash, computed in the same pass.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub transcript: Transcript,
    pub canonical: CanonicalTranscript,
    /// `transcript_hash`, what the organiser signs.
    pub hash: Digest,
}

/// A step of a draw or a verification, reported to an observer as it completes (the CLI
/// times them; this crate has no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Announcement, leaves, groups, Merkle root, reveals and seed.
    InputsChecked,
    /// The lottery order and the units in it.
    LotteryDrawn,
    /// Admitted lists and waitlists.
    Allocated,
    /// (draw) The transcript's canonical JSON and hash.
    Serialized,
    /// (verify) The recomputed results match the transcript.
    ResultsCompared,
    /// (verify) Transcript hashed, every signature checked.
    SignaturesChecked,
}

/// [`run`], calling `observe` after each [`Phase`].
pub fn run_observed(
    inputs: DrawInputs,
    observe: &mut dyn FnMut(Phase),
) -> Result<Drawn, CheckFailure> {
    run_with(inputs, &Sequential, observe)
}

/// [`run_observed`], handing independent work (serialising and hashing the leaves, the
/// Merkle tree) to `join`. The transcript is the same bytes whatever the join does.
pub fn run_with(
    inputs: DrawInputs,
    join: &impl Join,
    observe: &mut dyn FnMut(Phase),
) -> Result<Drawn, CheckFailure> {
    // One serialisation of the leaves serves the Merkle root check and the transcript.
    let leaves_json = leaves_json_with(&inputs.leaves, join);
    let prepared = prepare(
        &inputs.announcement,
        &inputs.announcement_signatures,
        &inputs.leaves,
        &leaves_json.hashes,
        &inputs.reveals,
        inputs.beacon_text.as_deref(),
        join,
    )?;
    observe(Phase::InputsChecked);
    let outcome = outcome(&inputs.announcement, &prepared, observe);
    let transcript = Transcript {
        spec: SpecTag,
        announcement: inputs.announcement,
        announcement_signatures: inputs.announcement_signatures,
        leaves: inputs.leaves,
        reveals: inputs.reveals,
        beacon_text: inputs.beacon_text,
        seed: prepared.seed,
        lottery: outcome.lottery,
        admitted: outcome.admitted,
        waitlists: outcome.waitlists,
    };
    let canonical = transcript.canonical_with_leaves(leaves_json.json);
    let hash = canonical.hash();
    observe(Phase::Serialized);
    Ok(Drawn {
        transcript,
        canonical,
        hash,
    })
}

/// A unit: one application without a group, or all applications of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnitEntry {
    /// The smallest `app` among the members.
    pub id: AppCode,
    /// The member whose choices stand for the unit's (all members have the same).
    pub leaf: u32,
    pub size: u32,
}

/// The inputs after every check that does not need the result.
pub(crate) struct Prepared {
    pub units: Vec<UnitEntry>,
    pub picks: LeafPicks,
    pub seed: Digest,
}

/// Checks the announcement and its signatures, leaves, groups, tree head, reveals and
/// beacon, then computes the units and the seed.
///
/// The announcement's signatures are checked first, ahead of the spec's listing order: every
/// later check rests on the announcement, and a changed announcement is then named as such
/// rather than as a seed that does not recompute.
pub(crate) fn prepare(
    announcement: &Announcement,
    announcement_signatures: &[Signature],
    leaves: &[Leaf],
    leaf_hashes: &[Digest],
    reveals: &[WitnessSecret],
    beacon_text: Option<&str>,
    join: &impl Join,
) -> Result<Prepared, CheckFailure> {
    announcement
        .check_kindergartens()
        .map_err(|detail| CheckFailure::new(Check::Announcement, detail))?;
    check_announcement_signatures(announcement, announcement_signatures)?;
    // The Merkle root is computed beside the leaf checks (two pieces of work of similar
    // size); the failures are still reported in the order of the checks: leaves, groups,
    // tree head.
    let (checked, root) = join.join(
        || leaf_picks(announcement, leaves).and_then(|picks| Ok((picks, prepare_leaves(leaves)?))),
        || tree_hash(leaf_hashes),
    );
    let (picks, units) = checked?;
    check_tree_head(announcement, leaf_hashes.len(), root)?;
    check_reveals(announcement, reveals)?;
    match (&announcement.beacon, beacon_text) {
        (Some(_), None) => {
            return Err(CheckFailure::new(
                Check::Seed,
                "the announcement names a beacon but beacon_text is null",
            ));
        }
        (None, Some(_)) => {
            return Err(CheckFailure::new(
                Check::Seed,
                "beacon_text is given but the announcement names no beacon",
            ));
        }
        _ => {}
    }
    let seed = seed(&announcement.hash(), beacon_text, reveals);
    Ok(Prepared { units, picks, seed })
}

/// Checks that leaves are ordered by `app` with no code twice, then forms the units.
pub(crate) fn prepare_leaves(leaves: &[Leaf]) -> Result<Vec<UnitEntry>, CheckFailure> {
    for (i, pair) in leaves.windows(2).enumerate() {
        if pair[0].app >= pair[1].app {
            let problem = if pair[0].app == pair[1].app {
                "appears twice"
            } else {
                "is out of order"
            };
            return Err(CheckFailure::new(
                Check::Leaves,
                format!("leaves[{}] ({}) {problem}", i + 1, pair[1].app),
            ));
        }
    }
    units(leaves)
}

/// Checks that every choice names an announced kindergarten, and returns each leaf's
/// choices as kindergarten indices (flat, `MAX_CHOICES` slots per leaf would waste memory,
/// so leaf `i`'s picks are `picks[starts[i]..starts[i + 1]]`).
fn leaf_picks(announcement: &Announcement, leaves: &[Leaf]) -> Result<LeafPicks, CheckFailure> {
    let mut picks = LeafPicks {
        starts: Vec::with_capacity(leaves.len() + 1),
        picks: Vec::with_capacity(leaves.len() * 3),
    };
    picks.starts.push(0);
    let index = KindergartenIndex::new(&announcement.kindergartens);
    for (i, leaf) in leaves.iter().enumerate() {
        for choice in leaf.choices.as_slice() {
            let Some(kg) = index.get(&choice.kg) else {
                return Err(CheckFailure::new(
                    Check::Leaves,
                    format!(
                        "leaves[{i}] ({}) chooses {}, which is not announced",
                        leaf.app, choice.kg
                    ),
                ));
            };
            picks.picks.push(Pick {
                kg: kg as u32,
                class: choice.class,
            });
        }
        picks.starts.push(picks.picks.len() as u32);
    }
    Ok(picks)
}

/// Kindergarten code -> position in the announcement, as
/// [`Announcement::kindergarten_index`] gives it, by a hash table: a million leaves look up
/// three codes each, and a binary search costs a dozen code comparisons per lookup. Open
/// addressing with linear probing over a power-of-two table at most half full; FNV-1a of
/// the code's bytes, finalised (no `RandomState`: nothing here may depend on the OS).
struct KindergartenIndex<'a> {
    kindergartens: &'a [Kindergarten],
    /// Index into `kindergartens`, or `EMPTY`.
    slots: Vec<u32>,
}

impl<'a> KindergartenIndex<'a> {
    const EMPTY: u32 = u32::MAX;

    fn new(kindergartens: &'a [Kindergarten]) -> Self {
        let size = (kindergartens.len() * 2).next_power_of_two().max(2);
        let mut index = KindergartenIndex {
            kindergartens,
            slots: vec![Self::EMPTY; size],
        };
        for (i, kg) in kindergartens.iter().enumerate() {
            let mut slot = index.home(&kg.code);
            // The first of equal codes wins (the announcement check refuses them anyway).
            while index.slots[slot] != Self::EMPTY {
                if kindergartens[index.slots[slot] as usize].code == kg.code {
                    break;
                }
                slot = (slot + 1) & (size - 1);
            }
            if index.slots[slot] == Self::EMPTY {
                index.slots[slot] = i as u32;
            }
        }
        index
    }

    fn get(&self, code: &KindergartenCode) -> Option<usize> {
        let mut slot = self.home(code);
        loop {
            let i = self.slots[slot];
            if i == Self::EMPTY {
                return None;
            }
            if self.kindergartens[i as usize].code == *code {
                return Some(i as usize);
            }
            slot = (slot + 1) & (self.slots.len() - 1);
        }
    }

    fn home(&self, code: &KindergartenCode) -> usize {
        let mut hash = code
            .as_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
                (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        // FNV leaves the last bytes (where codes like `KG-0001` differ) in few bits; the
        // MurmurHash3 finaliser spreads them over all of them.
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash as usize & (self.slots.len() - 1)
    }
}

/// Every leaf's choices as kindergarten indices.
pub(crate) struct LeafPicks {
    starts: Vec<u32>,
    picks: Vec<Pick>,
}

impl LeafPicks {
    fn of(&self, leaf: u32) -> &[Pick] {
        let i = leaf as usize;
        &self.picks[self.starts[i] as usize..self.starts[i + 1] as usize]
    }
}

/// Forms the units, ordered by id, checking that every group has at least two members with
/// identical choices.
fn units(leaves: &[Leaf]) -> Result<Vec<UnitEntry>, CheckFailure> {
    let mut units: Vec<UnitEntry> = Vec::with_capacity(leaves.len());
    let mut grouped: Vec<(&Group, u32)> = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        if leaf.group.is_none() {
            units.push(UnitEntry {
                id: leaf.app,
                leaf: i as u32,
                size: 1,
            });
        } else {
            grouped.push((&leaf.group, i as u32));
        }
    }
    let singles = units.len();
    // Leaves are ordered by app, so within a group the first member has the smallest app.
    grouped.sort_unstable();
    for members in grouped.chunk_by(|a, b| a.0 == b.0) {
        let first = &leaves[members[0].1 as usize];
        if members.len() < 2 {
            return Err(CheckFailure::new(
                Check::Groups,
                format!(
                    "group {:?} has only one member ({})",
                    first.group.as_str(),
                    first.app
                ),
            ));
        }
        if let Some(&(_, other)) = members
            .iter()
            .find(|m| leaves[m.1 as usize].choices != first.choices)
        {
            return Err(CheckFailure::new(
                Check::Groups,
                format!(
                    "members {} and {} of group {:?} have different choices",
                    first.app,
                    leaves[other as usize].app,
                    first.group.as_str()
                ),
            ));
        }
        units.push(UnitEntry {
            id: first.app,
            leaf: members[0].1,
            size: members.len() as u32,
        });
    }
    // The single children's units are in leaf order, which is id order: only the groups'
    // units need sorting, and then one merge orders them all (ids are distinct).
    let mut group_units = units.split_off(singles);
    group_units.sort_unstable_by_key(|unit| unit.id);
    Ok(merge_by_id(units, group_units))
}

/// Merges two lists of units sorted by id.
fn merge_by_id(a: Vec<UnitEntry>, b: Vec<UnitEntry>) -> Vec<UnitEntry> {
    if b.is_empty() {
        return a;
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if x.id < y.id { a.next() } else { b.next() };
        merged.extend(next);
    }
    merged.extend(a);
    merged.extend(b);
    merged
}

fn check_tree_head(
    announcement: &Announcement,
    leaf_count: usize,
    root: Digest,
) -> Result<(), CheckFailure> {
    let head = &announcement.applications;
    if head.tree_size != leaf_count as u64 {
        return Err(CheckFailure::new(
            Check::TreeHead,
            format!(
                "the announcement commits to {} applications, the transcript has {}",
                head.tree_size, leaf_count
            ),
        ));
    }
    if root != head.root {
        return Err(CheckFailure::new(
            Check::TreeHead,
            format!(
                "the leaves hash to root {root}, the announcement says {}",
                head.root
            ),
        ));
    }
    Ok(())
}

fn check_reveals(
    announcement: &Announcement,
    reveals: &[WitnessSecret],
) -> Result<(), CheckFailure> {
    if reveals.len() != announcement.witnesses.len() {
        return Err(CheckFailure::new(
            Check::Reveals,
            format!(
                "{} witnesses committed, {} secrets revealed",
                announcement.witnesses.len(),
                reveals.len()
            ),
        ));
    }
    for (witness, secret) in announcement.witnesses.iter().zip(reveals) {
        if secret.commitment(&announcement.draw_id) != witness.commitment {
            return Err(CheckFailure::new(
                Check::Reveals,
                format!(
                    "the secret of witness {:?} ({}) does not match the commitment",
                    witness.name, witness.role
                ),
            ));
        }
    }
    Ok(())
}

/// At least one organiser signature on the announcement, and every one verifies.
fn check_announcement_signatures(
    announcement: &Announcement,
    signatures: &[Signature],
) -> Result<(), CheckFailure> {
    if !signatures.iter().any(|s| s.role == Role::Organiser) {
        return Err(CheckFailure::new(
            Check::OrganiserSignatures,
            "the announcement has no organiser signature",
        ));
    }
    let hash = announcement.hash();
    for signature in signatures {
        signature.verify(Signed::Announcement, &hash).map_err(|e| {
            CheckFailure::new(
                Check::Signatures,
                format!(
                    "announcement signature by {} {}: {e}",
                    signature.role.as_str(),
                    hex::encode(signature.public_key)
                ),
            )
        })?;
    }
    Ok(())
}

/// The result of the draw in transcript form.
pub(crate) struct Outcome {
    pub lottery: Vec<AppCode>,
    pub admitted: Vec<Placement>,
    pub waitlists: Vec<Placement>,
    /// Units and children admitted.
    pub admitted_units: usize,
    pub admitted_children: u64,
}

/// Lottery, allocation and waitlists from checked inputs.
pub(crate) fn outcome(
    announcement: &Announcement,
    prepared: &Prepared,
    observe: &mut dyn FnMut(Phase),
) -> Outcome {
    let order = lottery_order(&prepared.seed, prepared.units.len());
    let by_lottery: Vec<&UnitEntry> = order
        .iter()
        .map(|&initial| &prepared.units[initial])
        .collect();
    let mut table = Units::with_capacity(by_lottery.len(), by_lottery.len() * 3);
    for unit in &by_lottery {
        table.push(unit.size, prepared.picks.of(unit.leaf).iter().copied());
    }
    observe(Phase::LotteryDrawn);
    let seats: Vec<u64> = announcement
        .kindergartens
        .iter()
        .map(|kg| kg.seats)
        .collect();
    let allocation = allocate(
        &table,
        &seats,
        announcement.mechanism,
        announcement.multiples,
    );
    let ids = |list: Vec<u32>| -> Vec<AppCode> {
        list.into_iter()
            .map(|u| by_lottery[u as usize].id)
            .collect()
    };
    let admitted_units = allocation.admitted.iter().map(Vec::len).sum();
    let admitted_children = allocation
        .admitted
        .iter()
        .flatten()
        .map(|&u| u64::from(by_lottery[u as usize].size))
        .sum();
    let placements = |lists: Vec<Vec<u32>>| -> Vec<Placement> {
        announcement
            .kindergartens
            .iter()
            .zip(lists)
            .map(|(kg, list)| Placement {
                kg: kg.code,
                units: ids(list),
            })
            .collect()
    };
    let outcome = Outcome {
        lottery: by_lottery.iter().map(|unit| unit.id).collect(),
        admitted: placements(allocation.admitted),
        waitlists: placements(allocation.waitlists),
        admitted_units,
        admitted_children,
    };
    observe(Phase::Allocated);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kindergarten_table_agrees_with_the_binary_search() {
        for count in [0, 1, 2, 3, 7, 100, 2000] {
            let kindergartens: Vec<Kindergarten> = (0..count)
                .map(|i| Kindergarten {
                    code: KindergartenCode::parse(&format!("KG-{i:04}")).unwrap(),
                    name: String::new(),
                    seats: 1,
                })
                .collect();
            let announcement_like = |code: &KindergartenCode| {
                kindergartens.binary_search_by(|kg| kg.code.cmp(code)).ok()
            };
            let index = KindergartenIndex::new(&kindergartens);
            // Codes that differ only in their last digits still spread over the table: no
            // lookup walks far.
            let longest = kindergartens
                .iter()
                .map(|kg| {
                    let home = index.home(&kg.code);
                    let at = index.get(&kg.code).unwrap();
                    let slot = index.slots.iter().position(|&i| i as usize == at).unwrap();
                    (slot + index.slots.len() - home) & (index.slots.len() - 1)
                })
                .max()
                .unwrap_or(0);
            assert!(longest < 16, "{count} codes: a probe of {longest}");
            for probe in (0..count + 5)
                .map(|i| format!("KG-{i:04}"))
                .chain(["A".into(), "KG-".into()])
            {
                let code = KindergartenCode::parse(&probe).unwrap();
                assert_eq!(
                    index.get(&code),
                    announcement_like(&code),
                    "{probe} of {count}"
                );
            }
        }
    }
}
