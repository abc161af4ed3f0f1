//! Native tests of the pure modules, with the keys in `testdata/`.

mod access;
mod cache;
mod config;
mod jwks;
mod outputs;
mod rules;
mod support;
mod token;
mod verify;
