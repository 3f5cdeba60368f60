//! The crate stays pure: no async runtime anywhere in its normal dependency tree. (IO, clock
//! and OS randomness are kept out by `lottery/clippy.toml`.)

use std::collections::{BTreeMap, BTreeSet};

/// Packages that would bring an async runtime or its reactor.
const FORBIDDEN: [&str; 4] = ["tokio", "async-std", "smol", "mio"];

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the test reads the lock file; the crate itself never does IO"
)]
fn no_async_runtime_in_the_dependency_tree() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let lock = std::fs::read_to_string(format!("{manifest_dir}/../Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(format!("{manifest_dir}/Cargo.toml")).unwrap();
    let graph = parse_lock(&lock);
    let mut stack: Vec<String> = normal_dependencies(&manifest);
    assert!(
        stack.contains(&"sha2".to_owned()),
        "parsed the manifest: {stack:?}"
    );
    let mut seen = BTreeSet::new();
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        assert!(
            !FORBIDDEN.contains(&name.as_str()),
            "lottery depends on {name}"
        );
        stack.extend(graph.get(&name).into_iter().flatten().cloned());
    }
    assert!(seen.contains("rand_chacha"));
}

/// Package name -> names of its dependencies (all versions merged: an over-approximation,
/// which is the safe side for a "never depends on" check).
fn parse_lock(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let Some(name) = block.lines().find_map(|l| l.strip_prefix("name = ")) else {
            continue;
        };
        let name = name.trim_matches('"').to_owned();
        let mut deps = Vec::new();
        if let Some(start) = block.find("dependencies = [") {
            let list = &block[start..];
            let end = list.find(']').unwrap_or(list.len());
            for item in list[..end].split('"').skip(1).step_by(2) {
                deps.push(item.split(' ').next().unwrap_or(item).to_owned());
            }
        }
        graph.entry(name).or_default().extend(deps);
    }
    graph
}

/// The names under `[dependencies]` in the crate's manifest.
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let section = manifest.split("[dependencies]").nth(1).unwrap_or("");
    let section = section.split("\n[").next().unwrap_or("");
    section
        .lines()
        .filter_map(|line| line.split(['.', ' ', '=']).next())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
