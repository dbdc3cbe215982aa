//! A client report's incident figures read back from its JSON and its CSV, for the tests that
//! compare them with figures worked out by hand: the collector's contract tests
//! (`collector/tests/contracts.rs`) and the end-to-end ones (`tests/e2e/contracts.rs`), which
//! both include this file as a module (`#[path]`).

/// Priority, reaction s, reaction breached, resolution s, resolution breached.
pub(crate) type Figures = (String, i64, bool, i64, bool);

/// Figures written by hand, as [`Figures`].
pub(crate) fn want(rows: &[(&str, i64, bool, i64, bool)]) -> Vec<Figures> {
    rows.iter().map(|(p, a, b, c, d)| ((*p).to_owned(), *a, *b, *c, *d)).collect()
}

/// The figures of each incident of a client report's JSON, by start.
pub(crate) fn from_json(report: &serde_json::Value) -> Vec<Figures> {
    report["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| {
            let c = &i["clock"];
            (
                i["priority"].as_str().expect("priority").to_owned(),
                c["reaction_support_ms"].as_i64().expect("ms") / 1000,
                c["reaction_breached"].as_bool().expect("bool"),
                c["resolution_support_ms"].as_i64().expect("ms") / 1000,
                c["resolution_breached"].as_bool().expect("bool"),
            )
        })
        .collect()
}

/// The figures of each `incident` row of a client report's CSV, in the CSV's order.
pub(crate) fn from_csv(csv: &str) -> Vec<Figures> {
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[0] == "incident")
        .map(|r| {
            (
                r[col("priority")].to_owned(),
                r[col("reaction_s")].parse().expect("secs"),
                r[col("reaction_breached")] == "true",
                r[col("resolution_s")].parse().expect("secs"),
                r[col("resolution_breached")] == "true",
            )
        })
        .collect()
}
