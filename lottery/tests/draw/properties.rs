//! Property tests: capacities, uniqueness, waitlists, determinism, stability, tampering.

use std::sync::OnceLock;

use lottery::allocation::{Allocation, Pick, Units, allocate};
use lottery::simulate::{DemoOptions, SimulationParams};
use lottery::verify::verify_bytes;
use lottery::{Mechanism, Multiples, TrustedKeys};
use proptest::prelude::*;
use serde_json::Value;

use crate::support::{demo, small_signed_file};

/// Seats per kindergarten, units (size and choices) in lottery order, the mechanism and the
/// multiples rule.
#[derive(Debug, Clone)]
struct Case {
    seats: Vec<u64>,
    units: Vec<(u32, Vec<(u32, u64)>)>,
    mechanism: Mechanism,
    multiples: Multiples,
}

impl Case {
    fn table(&self) -> Units {
        let mut table = Units::default();
        for (size, picks) in &self.units {
            table.push(*size, picks.iter().map(|&(kg, class)| Pick { kg, class }));
        }
        table
    }

    fn run(&self) -> Allocation {
        allocate(&self.table(), &self.seats, self.mechanism, self.multiples)
    }
}

fn unit(
    kindergartens: u32,
    sizes: impl Strategy<Value = u32>,
) -> impl Strategy<Value = (u32, Vec<(u32, u64)>)> {
    let picks = proptest::sample::subsequence(
        (0..kindergartens).collect::<Vec<_>>(),
        1..=kindergartens.min(4) as usize,
    )
    .prop_shuffle()
    .prop_flat_map(|kgs| {
        let n = kgs.len();
        (Just(kgs), proptest::collection::vec(1u64..=3, n))
    })
    .prop_map(|(kgs, classes)| kgs.into_iter().zip(classes).collect::<Vec<_>>());
    (sizes, picks)
}

fn mechanism() -> impl Strategy<Value = Mechanism> {
    prop_oneof![
        Just(Mechanism::DeferredAcceptance),
        Just(Mechanism::ImmediateAcceptance)
    ]
}

fn multiples() -> impl Strategy<Value = Multiples> {
    prop_oneof![
        Just(Multiples::WholeOrSkip),
        Just(Multiples::WholeOrOverfill)
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1u32..6).prop_flat_map(|k| {
        let sizes = prop_oneof![6 => Just(1u32), 2 => Just(2u32), 1 => Just(3u32)];
        (
            proptest::collection::vec(0u64..7, k as usize),
            proptest::collection::vec(unit(k, sizes), 0..30),
            mechanism(),
            multiples(),
        )
            .prop_map(|(seats, units, mechanism, multiples)| Case {
                seats,
                units,
                mechanism,
                multiples,
            })
    })
}

/// Single-child units under deferred acceptance.
fn single_child_da_case() -> impl Strategy<Value = Case> {
    (1u32..6).prop_flat_map(|k| {
        (
            proptest::collection::vec(0u64..7, k as usize),
            proptest::collection::vec(unit(k, Just(1u32)), 0..30),
        )
            .prop_map(|(seats, units)| Case {
                seats,
                units,
                mechanism: Mechanism::DeferredAcceptance,
                multiples: Multiples::WholeOrSkip,
            })
    })
}

proptest! {
    #[test]
    fn seats_are_never_exceeded_except_by_overfill(case in case()) {
        let result = case.run();
        for (g, admitted) in result.admitted.iter().enumerate() {
            let children: u64 = admitted.iter().map(|&u| u64::from(case.units[u as usize].0)).sum();
            if children > case.seats[g] {
                prop_assert_eq!(case.multiples, Multiples::WholeOrOverfill);
                // Only one unit overfills, and only by less than its own size.
                let largest = admitted.iter().map(|&u| u64::from(case.units[u as usize].0)).max().unwrap_or(0);
                prop_assert!(children - case.seats[g] < largest);
                prop_assert!(case.seats[g] > 0);
            }
        }
    }

    #[test]
    fn each_unit_is_admitted_at_most_once_and_only_where_it_applied(case in case()) {
        let result = case.run();
        let mut count = vec![0; case.units.len()];
        for (g, admitted) in result.admitted.iter().enumerate() {
            for &u in admitted {
                count[u as usize] += 1;
                let choice = result.placed[u as usize].unwrap();
                prop_assert_eq!(case.units[u as usize].1[usize::from(choice)].0, g as u32);
            }
        }
        for (u, &n) in count.iter().enumerate() {
            prop_assert!(n <= 1);
            prop_assert_eq!(n == 1, result.placed[u].is_some());
        }
    }

    #[test]
    fn waitlists_hold_exactly_the_units_not_placed_at_or_above(case in case()) {
        let result = case.run();
        for (g, waitlist) in result.waitlists.iter().enumerate() {
            let mut expected: Vec<(u64, u32)> = Vec::new();
            for (u, (_, picks)) in case.units.iter().enumerate() {
                if let Some(index) = picks.iter().position(|p| p.0 == g as u32) {
                    let above = result.placed[u].map_or(usize::MAX, usize::from);
                    if index < above {
                        expected.push((picks[index].1, u as u32));
                    }
                }
            }
            expected.sort_unstable();
            let expected: Vec<u32> = expected.into_iter().map(|e| e.1).collect();
            prop_assert_eq!(waitlist, &expected);
        }
    }

    #[test]
    fn admitted_lists_are_in_rank_order(case in case()) {
        let result = case.run();
        for (g, admitted) in result.admitted.iter().enumerate() {
            let ranks: Vec<(u64, u32)> = admitted
                .iter()
                .map(|&u| (case.units[u as usize].1.iter().find(|p| p.0 == g as u32).unwrap().1, u))
                .collect();
            prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn deferred_acceptance_is_stable_for_single_children(case in single_child_da_case()) {
        let result = case.run();
        for (u, (_, picks)) in case.units.iter().enumerate() {
            let placed = result.placed[u].map_or(picks.len(), usize::from);
            for &(g, class) in &picks[..placed] {
                let admitted = &result.admitted[g as usize];
                // u prefers g to its placement: g must be full of units that outrank u.
                prop_assert_eq!(admitted.len() as u64, case.seats[g as usize]);
                for &other in admitted {
                    let other_class = case.units[other as usize].1.iter().find(|p| p.0 == g).unwrap().1;
                    prop_assert!((other_class, other) < (class, u as u32), "unit {} blocks at {}", u, g);
                }
            }
        }
    }

    #[test]
    fn same_inputs_give_the_same_bytes(seed in 0u64..1000, da in any::<bool>(), skip in any::<bool>()) {
        let options = DemoOptions {
            mechanism: if da { Mechanism::DeferredAcceptance } else { Mechanism::ImmediateAcceptance },
            multiples: if skip { Multiples::WholeOrSkip } else { Multiples::WholeOrOverfill },
            ..DemoOptions::default()
        };
        let params = SimulationParams { applications: 20, kindergartens: 4, ..SimulationParams::default() };
        let first = demo(seed, params, &options).signed.canonical_json();
        let second = demo(seed, params, &options).signed.canonical_json();
        prop_assert_eq!(first, second);
    }

    #[test]
    fn flipping_any_byte_makes_verify_fail(position in any::<proptest::sample::Index>(), mask in 1u8..=255) {
        let bytes = &signed_file().1;
        let mut tampered = bytes.clone();
        tampered[position.index(bytes.len())] ^= mask;
        prop_assert!(verify_bytes(&tampered, &TrustedKeys::default()).is_err());
    }

    #[test]
    fn reordering_any_list_makes_verify_fail(pick in any::<proptest::sample::Index>(), a in any::<proptest::sample::Index>(), b in any::<proptest::sample::Index>()) {
        let value: Value = serde_json::from_slice(&signed_file().1).unwrap();
        let lists = reorderable_lists(&value);
        let path = &lists[pick.index(lists.len())];
        let mut tampered = value.clone();
        let list = pointer_array(&mut tampered, path);
        let (i, j) = (a.index(list.len()), b.index(list.len()));
        prop_assume!(list[i] != list[j]);
        list.swap(i, j);
        let bytes = lottery::jcs::canonicalize(&tampered).unwrap();
        prop_assert!(verify_bytes(&bytes, &TrustedKeys::default()).is_err(), "swap in {}", path);
    }
}

fn signed_file() -> &'static (lottery::simulate::DemoDraw, Vec<u8>) {
    static FILE: OnceLock<(lottery::simulate::DemoDraw, Vec<u8>)> = OnceLock::new();
    FILE.get_or_init(small_signed_file)
}

#[test]
fn flipping_the_low_bit_of_every_byte_makes_verify_fail() {
    let bytes = &signed_file().1;
    assert!(verify_bytes(bytes, &TrustedKeys::default()).is_ok());
    for position in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[position] ^= 1;
        assert!(
            verify_bytes(&tampered, &TrustedKeys::default()).is_err(),
            "byte {position} flipped still verifies"
        );
    }
}

#[test]
fn swapping_the_first_two_different_items_of_every_list_makes_verify_fail() {
    let value: Value = serde_json::from_slice(&signed_file().1).unwrap();
    let lists = reorderable_lists(&value);
    assert!(lists.len() > 10, "{lists:?}");
    for path in &lists {
        let mut tampered = value.clone();
        let list = pointer_array(&mut tampered, path);
        let j = (1..list.len()).find(|&j| list[j] != list[0]).unwrap();
        list.swap(0, j);
        let bytes = lottery::jcs::canonicalize(&tampered).unwrap();
        let failure = verify_bytes(&bytes, &TrustedKeys::default());
        assert!(failure.is_err(), "reordering {path} still verifies");
    }
}

/// JSON pointers of every array with two different items, except the outer `signatures`
/// list: signatures are a set (a verifier checks each), not a sequence.
fn reorderable_lists(value: &Value) -> Vec<String> {
    fn walk(value: &Value, path: String, out: &mut Vec<String>) {
        match value {
            Value::Array(items) => {
                if items.iter().any(|item| *item != items[0]) && path != "/signatures" {
                    out.push(path.clone());
                }
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}/{i}"), out);
                }
            }
            Value::Object(members) => {
                for (key, item) in members {
                    walk(item, format!("{path}/{key}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

fn pointer_array<'a>(value: &'a mut Value, path: &str) -> &'a mut Vec<Value> {
    value
        .pointer_mut(path)
        .and_then(Value::as_array_mut)
        .unwrap()
}
