// The filters with a JSON Schema of their plugin configuration: the filter's
// name and its crate, whose `config::Config` is the configuration's root type.
//
// One list for `xtask schemas` (xtask/src/schemas.rs) and the schema tests
// (tests/tests/schemas.rs): each includes this file with its own `filters!`
// macro. The crate is a dependency of both (xtask/Cargo.toml with
// `features = ["schema"]`, tests/Cargo.toml as a dev-dependency).
// `make new-filter` adds its filter above the marker line and the two
// dependencies.
filters! {
    "header-transform" => header_transform,
    "jwt-auth" => jwt_auth,
    "jwt-acquire" => jwt_acquire,
    "plan-ratelimit" => plan_ratelimit,
    "cos-router" => cos_router,
    "dlp-redact" => dlp_redact,
    // new-filter: entries above this line
}
