//! Release automation that cannot run here is kept honest by what can:
//! - every `make` target the GitHub workflows call exists in the Makefile
//!   (and the tests run them: `make build` in dist.rs, `make push-oci` in
//!   registry.rs, `make dist` through the same xtask);
//! - every `run:` step is a make call, except the few listed here;
//! - the release uploads exactly the files `xtask dist` writes;
//! - CHANGELOG.md has an entry for the workspace version.

use std::collections::BTreeSet;

use pwf_tests::dist::Dist;
use pwf_tests::repo_root;
use serde_json::Value;

/// `run:` steps that are not make calls: (workflow, step name).
const NOT_MAKE: [(&str, &str); 2] = [
    ("release.yml", "Log in to ghcr.io"),
    ("release.yml", "GitHub release"),
];

fn workflow(name: &str) -> Value {
    let path = repo_root().join(".github/workflows").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (step name, run script) of every `run:` step.
fn run_steps(wf: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for job in wf["jobs"].as_object().expect("jobs").values() {
        for step in job["steps"].as_array().expect("steps") {
            if let Some(run) = step["run"].as_str() {
                let name = step["name"].as_str().expect("every run step has a name");
                out.push((name.to_string(), run.to_string()));
            }
        }
    }
    out
}

/// The targets of every `make` command in a script: the words after `make`
/// that are not options or VAR=value assignments.
fn make_targets(script: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for command in script.split(['\n', ';', '|', '&']) {
        let mut words = command.split_whitespace();
        if words.next() != Some("make") {
            continue;
        }
        targets.extend(
            words
                .take_while(|w| !w.starts_with('#'))
                .filter(|w| !w.starts_with('-') && !w.contains('='))
                .map(str::to_string),
        );
    }
    targets
}

/// Rule names defined in the Makefile (`name:` at the start of a line).
fn makefile_rules() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("Makefile")).expect("Makefile");
    text.lines()
        .filter(|l| !l.starts_with(['\t', '#', ' ', '.']))
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, rest)| !rest.starts_with('=') && !name.contains(['$', '=', ' ']))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn make_targets_parse_as_expected() {
    assert_eq!(
        make_targets("make dist RELEASE_TAG=\"$X\" && make -s push-oci REGISTRY=r\necho make x"),
        ["dist", "push-oci"]
    );
    let rules = makefile_rules();
    for rule in [
        "build",
        "test",
        "lint",
        "dist",
        "push-oci",
        "setup-registry",
    ] {
        assert!(rules.contains(rule), "{rule} missing from {rules:?}");
    }
    assert!(!rules.contains("SHELL"));
}

#[test]
fn workflows_call_only_existing_make_targets() {
    let rules = makefile_rules();
    let mut called = BTreeSet::new();
    for file in ["ci.yml", "release.yml"] {
        let wf = workflow(file);
        for (name, script) in run_steps(&wf) {
            let targets = make_targets(&script);
            if NOT_MAKE.contains(&(file, name.as_str())) {
                assert!(targets.is_empty(), "{file}: {name}: listed as not make");
                continue;
            }
            assert!(
                !targets.is_empty(),
                "{file}: step {name:?} is not a make call: {script}"
            );
            for target in targets {
                assert!(
                    rules.contains(&target),
                    "{file}: step {name:?} calls `make {target}`, which the Makefile does not define"
                );
                called.insert(target);
            }
        }
    }
    let expected: BTreeSet<String> = ["dist", "lint", "push-oci", "setup-registry", "test"]
        .map(String::from)
        .into();
    assert_eq!(called, expected);
}

#[test]
fn workflow_triggers() {
    let ci = workflow("ci.yml");
    assert_eq!(ci["on"]["push"]["branches"], serde_json::json!(["main"]));
    assert!(ci["on"].get("pull_request").is_some());
    let release = workflow("release.yml");
    assert_eq!(release["on"]["push"]["tags"], serde_json::json!(["v*"]));
    assert_eq!(release["permissions"]["packages"], "write");
    assert_eq!(release["permissions"]["contents"], "write");
    // The release tag must name the workspace version: make dist checks it.
    let steps = run_steps(&release);
    let dist_step = steps
        .iter()
        .find(|(n, _)| n == "make dist")
        .expect("make dist step");
    assert!(
        dist_step.1.contains("RELEASE_TAG=\"$GITHUB_REF_NAME\""),
        "{}",
        dist_step.1
    );
}

#[test]
fn release_uploads_every_dist_file_but_the_oci_layouts() {
    let steps = run_steps(&workflow("release.yml"));
    let script = &steps
        .iter()
        .find(|(n, _)| n == "GitHub release")
        .expect("GitHub release step")
        .1;
    let globs: Vec<&str> = script
        .split_whitespace()
        .filter(|w| w.starts_with("dist/"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(tmp.path());
    let top_level: BTreeSet<String> = std::fs::read_dir(&dist.dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut uploaded = BTreeSet::new();
    for glob in &globs {
        let pattern = glob.strip_prefix("dist/").unwrap();
        let matched: Vec<&String> = top_level
            .iter()
            .filter(|f| glob_match(pattern, f))
            .collect();
        assert!(!matched.is_empty(), "{glob} matches no dist file");
        uploaded.extend(matched.into_iter().cloned());
    }
    assert_eq!(uploaded, top_level);
}

/// `*` (any run of characters) and literals, as the shell expands the
/// release globs.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            name.starts_with(prefix)
                && (prefix.len()..=name.len()).any(|i| glob_match(rest, &name[i..]))
        }
    }
}

#[test]
fn changelog_has_an_entry_for_the_workspace_version() {
    let cargo = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let version = cargo
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .expect("[workspace.package] version");
    let changelog = std::fs::read_to_string(repo_root().join("CHANGELOG.md")).unwrap();
    let heading = format!("## [{version}]");
    let section = changelog
        .split(&heading)
        .nth(1)
        .unwrap_or_else(|| panic!("CHANGELOG.md has no `{heading}` section"));
    let body = section.split("\n## ").next().unwrap_or_default();
    assert!(
        body.contains("### "),
        "the {version} entry lists no changes:\n{body}"
    );
    assert!(
        changelog.contains(&format!("[{version}]: https://")),
        "no link for [{version}]"
    );
    assert!(changelog.contains("## [Unreleased]"));
}
