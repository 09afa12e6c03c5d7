//! Per-route rules: matching a request to the most specific rule, and what that rule requires.
