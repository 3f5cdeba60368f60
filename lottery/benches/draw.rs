//! `cargo bench -p lottery`: the phases of a draw at 10k and 100k applications (the 1M
//! figures come from `gongkai draw simulate` and `gongkai draw verify --timings`, see
//! docs/benchmarks.md).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lottery::allocation::{Pick, Units, allocate};
use lottery::commit::commit;
use lottery::seed::lottery_order;
use lottery::signature::{Role, Signature, Signed};
use lottery::simulate::{DemoOptions, SimulationParams, demo_draw, synthetic};
use lottery::transcript::signed_transcript_json;
use lottery::verify::verify_bytes;
use lottery::{Digest, Mechanism, Multiples, TrustedKeys};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SIZES: [usize; 2] = [10_000, 100_000];

fn params(applications: usize) -> SimulationParams {
    SimulationParams {
        applications,
        kindergartens: (applications / 500).max(2),
        choices: 3,
        multiples_per_mille: 50,
        seats_per_mille: 900,
    }
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([42; 32])
}

fn leaves_and_root(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaves+merkle_root");
    group.sample_size(10);
    for n in SIZES {
        let applications = synthetic(params(n), &mut rng()).applications;
        group.bench_with_input(
            BenchmarkId::from_parameter(n),
            &applications,
            |b, applications| {
                b.iter_batched(
                    || applications.clone(),
                    |mut applications| black_box(commit(&mut applications).unwrap().tree_head),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

fn seed_and_lottery(c: &mut Criterion) {
    let mut group = c.benchmark_group("lottery_order");
    group.sample_size(10);
    for n in SIZES {
        let seed = Digest::of(&[b"bench"]);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| black_box(lottery_order(&seed, n)))
        });
    }
    group.finish();
}

fn allocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocation");
    group.sample_size(10);
    for n in SIZES {
        let draw = demo_draw(params(n), &DemoOptions::default(), &mut rng()).unwrap();
        let transcript = &draw.signed.transcript;
        let announcement = &transcript.announcement;
        // Units in lottery order, as the draw builds them.
        let mut group_sizes = std::collections::BTreeMap::new();
        for leaf in transcript
            .leaves
            .iter()
            .filter(|leaf| !leaf.group.is_none())
        {
            *group_sizes.entry(&leaf.group).or_insert(0u32) += 1;
        }
        let mut units = Units::default();
        for id in &transcript.lottery {
            let index = transcript
                .leaves
                .binary_search_by(|leaf| leaf.app.cmp(id))
                .unwrap();
            let leaf = &transcript.leaves[index];
            let size = group_sizes.get(&leaf.group).copied().unwrap_or(1);
            units.push(
                size,
                leaf.choices.as_slice().iter().map(|choice| Pick {
                    kg: announcement.kindergarten_index(&choice.kg).unwrap() as u32,
                    class: choice.class,
                }),
            );
        }
        let seats: Vec<u64> = announcement
            .kindergartens
            .iter()
            .map(|kg| kg.seats)
            .collect();
        for mechanism in [
            Mechanism::DeferredAcceptance,
            Mechanism::ImmediateAcceptance,
        ] {
            let id = format!("{}/{n}", mechanism.as_str());
            group.bench_function(id, |b| {
                b.iter(|| black_box(allocate(&units, &seats, mechanism, Multiples::WholeOrSkip)))
            });
        }
    }
    group.finish();
}

fn canonical_json_and_signing(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonical_json+signing");
    group.sample_size(10);
    for n in SIZES {
        let draw = demo_draw(params(n), &DemoOptions::default(), &mut rng()).unwrap();
        let key = draw.organiser.signing_key().clone();
        group.bench_with_input(
            BenchmarkId::from_parameter(n),
            &draw.signed.transcript,
            |b, transcript| {
                b.iter(|| {
                    let json = transcript.canonical_json();
                    let hash = Digest::of(&[&json]);
                    let signature =
                        Signature::sign(&key, Role::Organiser, Signed::Transcript, &hash);
                    black_box(signed_transcript_json(&json, &[signature]))
                })
            },
        );
    }
    group.finish();
}

fn full_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    for n in SIZES {
        let draw = demo_draw(params(n), &DemoOptions::default(), &mut rng()).unwrap();
        let bytes = draw.signed.canonical_json();
        group.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| {
            b.iter(|| black_box(verify_bytes(bytes, &TrustedKeys::default()).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    leaves_and_root,
    seed_and_lottery,
    allocation,
    canonical_json_and_signing,
    full_verify
);
criterion_main!(benches);
