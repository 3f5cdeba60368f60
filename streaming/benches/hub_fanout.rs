//! Placeholder until the hub benchmark lands.
fn main() {}
