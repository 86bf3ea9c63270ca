//! The promise of `rekindle = { path = "..." }` with no feature flags: the engine
//! alone, without the binary's crates (`default = []`). Reads `cargo tree` of this
//! package as an embedder gets it and fails if a crate of the binary, of SQLite, of
//! a database client or of systemd is in it, or if a direct dependency appears that
//! is not on the list below; and of the core, which may link no runtime at all.

use std::process::Command;

/// Crates that only a feature may bring (`cli`, `sqlite`, `systemd`,
/// `http`: the lean library carries no HTTP server, ...).
const FORBIDDEN: [&str; 15] = [
    "tokio-postgres",
    "sqlx",
    "deadpool-postgres",
    "hyper",
    "hyper-util",
    "prometheus-client",
    "clap",
    "indicatif",
    "rusqlite",
    "libsqlite3-sys",
    "tracing-subscriber",
    "sd-notify",
    "rustix",
    "sha2",
    "uuid",
];

/// The direct dependencies of the lean build, each with why the engine needs it.
const ALLOWED_DIRECT: [(&str, &str); 14] = [
    ("actix", "the actors"),
    (
        "tokio",
        "timers, oneshot channels, signals, the virtual runtime",
    ),
    ("serde", "specs, reports, notifications"),
    ("serde_json", "notification payloads, reports"),
    ("thiserror", "error types"),
    (
        "tracing",
        "logs (the subscriber is the embedder's or the cli's)",
    ),
    ("humantime", "durations in config and messages"),
    (
        "rekindle-core",
        "the lifecycle, its invariants and the checker's search",
    ),
    ("async-trait", "the driver traits"),
    (
        "futures-util",
        "the driver actor's calls (now_or_never, join_all)",
    ),
    ("libc", "the signal actor's signal mask"),
    ("rust-ini", "cinder.conf"),
    (
        "serde_path_to_error",
        "the connector's field paths in errors",
    ),
    ("strsim", "\"did you mean\" for misspelt options"),
];

/// `cargo tree` of `package` with its default features (as a dependent
/// without feature flags gets it), normal dependencies only.
fn tree_of(package: &str, depth: Option<u32>) -> String {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--quiet", "--offline", "--locked", "-p", package])
        .args(["-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"]);
    if let Some(depth) = depth {
        command.args(["--depth", &depth.to_string()]);
    }
    let out = command.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn lean_tree(depth: Option<u32>) -> String {
    tree_of("rekindle", depth)
}

/// What may never be in the core's tree: a runtime, a clock's or a socket's
/// crate, a database client, an argument parser.
const IMPURE: [&str; 10] = [
    "actix",
    "tokio",
    "futures-util",
    "rusqlite",
    "tokio-postgres",
    "sqlx",
    "hyper",
    "clap",
    "libc",
    "rustix",
];

/// The crates of `banned` in `package`'s tree (which must hold `expected`,
/// so an empty answer from `cargo tree` is never taken for a clean tree).
fn banned_in(
    package: &str,
    expected: &str,
    banned: &[&'static str],
) -> (Vec<&'static str>, String) {
    let tree = tree_of(package, None);
    let names = crate_names(&tree);
    assert!(
        names.contains(&expected),
        "unexpected cargo tree output for {package}:\n{tree}"
    );
    let found = banned
        .iter()
        .copied()
        .filter(|name| names.contains(name))
        .collect();
    (found, tree)
}

#[test]
fn the_core_links_no_runtime_clock_or_io_crate() {
    let (found, tree) = banned_in("rekindle-core", "thiserror", &IMPURE);
    assert!(
        found.is_empty(),
        "rekindle-core pulls {found:?}: the core is pure (no runtime, clock or I/O); \
         put what needs them in the engine\n{tree}"
    );
}

fn crate_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn without_feature_flags_no_crate_of_the_binary_sqlite_a_database_client_or_systemd_is_built() {
    let (found, tree) = banned_in("rekindle", "actix", &FORBIDDEN);
    assert!(
        found.is_empty(),
        "`rekindle` without feature flags pulls {found:?}: put them behind their feature\n{tree}"
    );
}

#[test]
fn without_feature_flags_every_direct_dependency_is_one_the_engine_needs() {
    let tree = lean_tree(Some(1));
    let unexpected: Vec<&str> = crate_names(&tree)
        .into_iter()
        .skip(1) // rekindle itself
        .filter(|name| !ALLOWED_DIRECT.iter().any(|(allowed, _)| allowed == name))
        .collect();
    assert!(
        unexpected.is_empty(),
        "new non-optional dependencies {unexpected:?}: make them optional behind a feature, \
         or add them to ALLOWED_DIRECT with the reason the engine needs them\n{tree}"
    );
}
