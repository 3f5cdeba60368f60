//! The hub core's integration tests: one binary (faster to build than one per file).
//! Simulation with fake clients, fake time and a fake bus; effect snapshots; properties.

mod cluster;
mod ip_limits;
mod props;
mod scenarios;
mod sim;
mod snapshots;
