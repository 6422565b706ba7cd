//! Hardening (issue 5, merged into the one integration binary): bad input,
//! authentication, hostile clients, faults and a request fuzzer, each family a
//! table of named cases run against the real `exeio` binary.
//!
//! Every row is asserted with its name in the failure message.
//! `EXEIO_FUZZ_CASES=100000` (and `EXEIO_FUZZ_SEED`) make the fuzzer run
//! longer by hand.

mod auth;
mod faults;
mod fuzz;
mod hostile;
mod input;
