//! Allocation (spec section 6): deferred or immediate acceptance over units that already
//! carry their lottery numbers, both rules for multiples, and the waitlists.
//!
//! Units are numbered by lottery position (`0` has lottery number 1) and kindergartens by
//! their index in the announcement, so a rank at a kindergarten is the pair
//! `(class, unit number)` and ties cannot occur.

use crate::announcement::{Mechanism, Multiples};

/// The units of a draw in lottery order, with their sizes and choices, stored flat (one
/// allocation for all choices instead of one per unit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units {
    sizes: Vec<u32>,
    starts: Vec<u32>,
    picks: Vec<Pick>,
}

/// One choice of a unit: kindergarten index and priority class there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub kg: u32,
    pub class: u64,
}

impl Units {
    pub fn with_capacity(units: usize, picks: usize) -> Units {
        Units {
            sizes: Vec::with_capacity(units),
            starts: Vec::with_capacity(units + 1),
            picks: Vec::with_capacity(picks),
        }
    }

    /// Appends the unit with the next lottery number.
    pub fn push(&mut self, size: u32, picks: impl IntoIterator<Item = Pick>) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.sizes.push(size);
        self.picks.extend(picks);
        self.starts.push(self.picks.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    pub fn size(&self, unit: u32) -> u32 {
        self.sizes[unit as usize]
    }

    pub fn picks(&self, unit: u32) -> &[Pick] {
        let u = unit as usize;
        &self.picks[self.starts[u] as usize..self.starts[u + 1] as usize]
    }
}

/// The result of an allocation, by unit number and kindergarten index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// For each kindergarten, its admitted units in rank order.
    pub admitted: Vec<Vec<u32>>,
    /// For each kindergarten, its waitlist in rank order.
    pub waitlists: Vec<Vec<u32>>,
    /// For each unit, the index of the choice it was admitted to.
    pub placed: Vec<Option<u8>>,
}

/// Allocates `units` to kindergartens with `seats[g]` seats each.
pub fn allocate(
    units: &Units,
    seats: &[u64],
    mechanism: Mechanism,
    multiples: Multiples,
) -> Allocation {
    let (admitted, placed) = match mechanism {
        Mechanism::DeferredAcceptance => deferred_acceptance(units, seats, multiples),
        Mechanism::ImmediateAcceptance => immediate_acceptance(units, seats, multiples),
    };
    let waitlists = waitlists(units, seats.len(), &placed);
    Allocation {
        admitted,
        waitlists,
        placed,
    }
}

/// A unit as a kindergarten sees it. The derived order is the rank order: class first,
/// then lottery number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    class: u64,
    unit: u32,
}

/// A kindergarten *fills* from `candidates` (in rank order) with `seats` seats: it accepts
/// each unit that fits; one that does not fit is accepted anyway under whole-or-overfill
/// when a seat is left (closing the kindergarten), and skipped under whole-or-skip.
/// Returns the seats left.
fn fill(
    candidates: &[Candidate],
    seats: u64,
    units: &Units,
    multiples: Multiples,
    accepted: &mut Vec<Candidate>,
    mut rejected: impl FnMut(Candidate),
) -> u64 {
    let mut left = seats;
    for &candidate in candidates {
        let size = u64::from(units.size(candidate.unit));
        if size <= left {
            left -= size;
            accepted.push(candidate);
        } else if multiples == Multiples::WholeOrOverfill && left > 0 {
            left = 0;
            accepted.push(candidate);
        } else {
            rejected(candidate);
        }
    }
    left
}

/// Student-proposing deferred acceptance in synchronous rounds, exactly as the spec
/// describes them: all free units propose at once, then every kindergarten that received
/// proposals fills from what it holds plus its new proposers. (With multiples, the fill is
/// not a responsive preference, so the round structure is part of the definition.)
///
/// Each kindergarten's held list is kept in rank order, and new proposers are sorted and
/// merged into it, so a round costs the size of the touched lists, not a full sort.
fn deferred_acceptance(
    units: &Units,
    seats: &[u64],
    multiples: Multiples,
) -> (Vec<Vec<u32>>, Vec<Option<u8>>) {
    let n = units.len();
    let mut next_choice = vec![0u8; n];
    let mut held: Vec<Vec<Candidate>> = vec![Vec::new(); seats.len()];
    let mut proposals: Vec<Vec<Candidate>> = vec![Vec::new(); seats.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut free: Vec<u32> = (0..n as u32).collect();
    let mut merged: Vec<Candidate> = Vec::new();
    while !free.is_empty() {
        for &unit in &free {
            let picks = units.picks(unit);
            let index = next_choice[unit as usize];
            if let Some(pick) = picks.get(usize::from(index)) {
                next_choice[unit as usize] = index + 1;
                let g = pick.kg as usize;
                if proposals[g].is_empty() {
                    touched.push(g);
                }
                proposals[g].push(Candidate {
                    class: pick.class,
                    unit,
                });
            }
            // A unit with no choice left stays unadmitted.
        }
        free.clear();
        for &g in &touched {
            let mut new = std::mem::take(&mut proposals[g]);
            new.sort_unstable();
            merge_sorted(&held[g], &new, &mut merged);
            new.clear();
            proposals[g] = new;
            held[g].clear();
            fill(&merged, seats[g], units, multiples, &mut held[g], |c| {
                free.push(c.unit)
            });
        }
        touched.clear();
    }
    let mut placed = vec![None; n];
    for list in &held {
        for candidate in list {
            // Invariant: a held unit has proposed at least once, so next_choice >= 1.
            placed[candidate.unit as usize] = Some(next_choice[candidate.unit as usize] - 1);
        }
    }
    let admitted = held
        .into_iter()
        .map(|list| list.into_iter().map(|c| c.unit).collect())
        .collect();
    (admitted, placed)
}

/// Immediate acceptance: in round r every unadmitted unit applies to its r-th choice, and
/// each kindergarten fills its remaining seats from that round's applicants only.
fn immediate_acceptance(
    units: &Units,
    seats: &[u64],
    multiples: Multiples,
) -> (Vec<Vec<u32>>, Vec<Option<u8>>) {
    let n = units.len();
    let mut left = seats.to_vec();
    let mut placed: Vec<Option<u8>> = vec![None; n];
    let mut admitted: Vec<Vec<Candidate>> = vec![Vec::new(); seats.len()];
    let mut applicants: Vec<Vec<Candidate>> = vec![Vec::new(); seats.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut waiting: Vec<u32> = (0..n as u32).collect();
    let mut round: u8 = 0;
    while !waiting.is_empty() {
        waiting.retain(|&unit| {
            let Some(pick) = units.picks(unit).get(usize::from(round)) else {
                return false; // no choice left: stays unadmitted
            };
            let g = pick.kg as usize;
            if applicants[g].is_empty() {
                touched.push(g);
            }
            applicants[g].push(Candidate {
                class: pick.class,
                unit,
            });
            true
        });
        for &g in &touched {
            let mut round_applicants = std::mem::take(&mut applicants[g]);
            round_applicants.sort_unstable();
            let before = admitted[g].len();
            left[g] = fill(
                &round_applicants,
                left[g],
                units,
                multiples,
                &mut admitted[g],
                |_| {},
            );
            for candidate in &admitted[g][before..] {
                placed[candidate.unit as usize] = Some(round);
            }
            round_applicants.clear();
            applicants[g] = round_applicants;
        }
        touched.clear();
        waiting.retain(|&unit| placed[unit as usize].is_none());
        round += 1;
    }
    let admitted = admitted
        .into_iter()
        .map(|mut list| {
            list.sort_unstable();
            list.into_iter().map(|c| c.unit).collect()
        })
        .collect();
    (admitted, placed)
}

/// The waitlist of kindergarten g: units that chose g, were not admitted to g, and were not
/// admitted to a choice they ranked above g, in rank order at g. For a unit admitted to its
/// choice `c`, these are exactly its choices before `c`; for an unadmitted unit, all.
fn waitlists(units: &Units, kindergartens: usize, placed: &[Option<u8>]) -> Vec<Vec<u32>> {
    let mut lists: Vec<Vec<Candidate>> = vec![Vec::new(); kindergartens];
    for unit in 0..units.len() as u32 {
        let picks = units.picks(unit);
        let above = placed[unit as usize].map_or(picks.len(), usize::from);
        for pick in &picks[..above] {
            lists[pick.kg as usize].push(Candidate {
                class: pick.class,
                unit,
            });
        }
    }
    lists
        .into_iter()
        .map(|mut list| {
            list.sort_unstable();
            list.into_iter().map(|c| c.unit).collect()
        })
        .collect()
}

fn merge_sorted(a: &[Candidate], b: &[Candidate], out: &mut Vec<Candidate>) {
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mechanism::{DeferredAcceptance as Da, ImmediateAcceptance as Ia};
    use Multiples::{WholeOrOverfill as Overfill, WholeOrSkip as Skip};

    /// Units in lottery order: (size, [(kindergarten, class), ...]).
    fn units(list: &[(u32, &[(u32, u64)])]) -> Units {
        let mut units = Units::default();
        for (size, picks) in list {
            units.push(*size, picks.iter().map(|&(kg, class)| Pick { kg, class }));
        }
        units
    }

    const A: u32 = 0;
    const B: u32 = 1;

    #[test]
    fn twins_at_the_last_seat() {
        // Two seats: the single child with lottery number 1 takes one; the twins (2) do not
        // fit in the last seat.
        let list = units(&[
            (1, &[(A, 1)]),
            (2, &[(A, 1)]),
            (1, &[(A, 1)]),
            (1, &[(A, 1)]),
        ]);
        for mechanism in [Da, Ia] {
            let skip = allocate(&list, &[2], mechanism, Skip);
            assert_eq!(
                skip.admitted,
                [vec![0, 2]],
                "skip passes over the twins to the next child"
            );
            assert_eq!(skip.waitlists, [vec![1, 3]]);
            let overfill = allocate(&list, &[2], mechanism, Overfill);
            assert_eq!(
                overfill.admitted,
                [vec![0, 1]],
                "overfill admits both twins into one seat"
            );
            assert_eq!(overfill.waitlists, [vec![2, 3]]);
        }
    }

    #[test]
    fn twins_that_fit_exactly_take_the_last_seats() {
        let list = units(&[(1, &[(A, 1)]), (2, &[(A, 1)]), (1, &[(A, 1)])]);
        for multiples in [Skip, Overfill] {
            assert_eq!(allocate(&list, &[3], Da, multiples).admitted, [vec![0, 1]]);
        }
    }

    #[test]
    fn overfill_closes_the_kindergarten() {
        // Three seats, a single child then triplets: the triplets overfill by one, and the
        // child after them gets nothing even under whole-or-overfill.
        let list = units(&[(1, &[(A, 1)]), (3, &[(A, 1)]), (1, &[(A, 1)])]);
        assert_eq!(allocate(&list, &[3], Da, Overfill).admitted, [vec![0, 1]]);
        assert_eq!(allocate(&list, &[3], Da, Skip).admitted, [vec![0, 2]]);
    }

    #[test]
    fn classes_beat_lottery_numbers() {
        // Lottery number 1 has class 2, lottery number 3 has class 1: class decides.
        let list = units(&[(1, &[(A, 2)]), (1, &[(A, 3)]), (1, &[(A, 1)])]);
        for mechanism in [Da, Ia] {
            let result = allocate(&list, &[2], mechanism, Skip);
            assert_eq!(
                result.admitted,
                [vec![2, 0]],
                "admitted in rank order: class, then lottery"
            );
            assert_eq!(result.waitlists, [vec![1]]);
        }
    }

    #[test]
    fn empty_kindergarten_admits_nobody() {
        let list = units(&[(1, &[(A, 1), (B, 1)]), (2, &[(A, 1)]), (1, &[(A, 2)])]);
        for mechanism in [Da, Ia] {
            for multiples in [Skip, Overfill] {
                let result = allocate(&list, &[0, 5], mechanism, multiples);
                assert_eq!(result.admitted, [vec![], vec![0]]);
                assert_eq!(result.waitlists, [vec![0, 1, 2], vec![]]);
                assert_eq!(result.placed, [Some(1), None, None]);
            }
        }
    }

    #[test]
    fn rejected_then_accepted_elsewhere() {
        // One seat each at A and B.
        // unit 0: B (class 2), then A (class 1)
        // unit 1: A (class 2), then B (class 1)
        // unit 2: A (class 1)
        let list = units(&[
            (1, &[(B, 2), (A, 1)]),
            (1, &[(A, 2), (B, 1)]),
            (1, &[(A, 1)]),
        ]);

        // Deferred acceptance. Round 1: A holds 2 and rejects 1; B holds 0.
        // Round 2: 1 proposes to B and displaces 0 (class 1 beats class 2).
        // Round 3: 0 proposes to A and displaces 2 (same class, better lottery number).
        let da = allocate(&list, &[1, 1], Da, Skip);
        assert_eq!(da.admitted, [vec![0], vec![1]]);
        assert_eq!(da.placed, [Some(1), Some(1), None]);
        // A's waitlist: 2 (unplaced) and 1 (placed at its 2nd choice, B); B's: 0 (placed
        // at its 2nd choice, A).
        assert_eq!(da.waitlists, [vec![2, 1], vec![0]]);

        // Immediate acceptance: round 1 admissions are final, so 1 finds B full in round 2.
        let ia = allocate(&list, &[1, 1], Ia, Skip);
        assert_eq!(ia.admitted, [vec![2], vec![0]]);
        assert_eq!(ia.placed, [Some(0), None, Some(0)]);
        assert_eq!(ia.waitlists, [vec![1], vec![1]]);
    }

    #[test]
    fn skip_goes_on_to_smaller_units() {
        let list = units(&[
            (3, &[(A, 1)]),
            (1, &[(A, 1)]),
            (2, &[(A, 1)]),
            (1, &[(A, 1)]),
        ]);
        assert_eq!(allocate(&list, &[2], Ia, Skip).admitted, [vec![1, 3]]);
        assert_eq!(allocate(&list, &[2], Ia, Overfill).admitted, [vec![0]]);
    }

    #[test]
    fn immediate_acceptance_fills_only_remaining_seats_from_each_round() {
        // Unit 0 gets A in round 1. Unit 1 (A second, class 1) applies to A only in round 2,
        // when A is full, although it would outrank unit 0 there.
        let list = units(&[(1, &[(A, 2)]), (1, &[(B, 1), (A, 1)]), (1, &[(B, 1)])]);
        let ia = allocate(&list, &[1, 1], Ia, Skip);
        assert_eq!(ia.admitted, [vec![0], vec![1]]);
        let list = units(&[(1, &[(A, 2)]), (1, &[(B, 2), (A, 1)]), (1, &[(B, 1)])]);
        let ia = allocate(&list, &[1, 1], Ia, Skip);
        assert_eq!(ia.admitted, [vec![0], vec![2]]);
        assert_eq!(ia.placed, [Some(0), None, Some(0)]);
        let da = allocate(&list, &[1, 1], Da, Skip);
        assert_eq!(
            da.admitted,
            [vec![1], vec![2]],
            "under DA unit 1 displaces unit 0 at A"
        );
    }
}
