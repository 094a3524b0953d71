//! Runs: one entity of one flow, from its saved state to a committed table.
