//! The Grafana dashboards in grafana/ against the metrics raftq defines and
//! against a real Prometheus scraping a real three-node cluster.
//!
//! The static checks always run. The proof needs Debian's `prometheus`
//! package (its `prometheus` and `promtool`): without it the test says
//! "skipped: prometheus not installed" and passes, unless
//! `RAFTQ_REQUIRE_PROMETHEUS=1` (as in CI) makes that a failure.
//!
//! `RAFTQ_DASHBOARD_SCRAPES` (default 8) sets how many scrapes of every node
//! Prometheus must hold before the panel queries are evaluated.

mod dashboards {
    pub mod cluster;
    pub mod http;
    pub mod panels;
    pub mod prometheus;
}

#[path = "support/ports.rs"]
mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dashboards::cluster::{self, LoadCounts, ProcessCluster};
use dashboards::panels::{self, PanelQuery, Variable};
use dashboards::prometheus::{self, Prometheus};
use raftq::metrics::{DEFINITIONS, Kind};
use tokio_util::sync::CancellationToken;

/// The uid every panel's datasource must have: the one provisioned.
const DATASOURCE_UID: &str = "raftq-prometheus";

/// How a metric name in a query resolves against src/metrics.rs.
fn resolve(name: &str) -> Result<&'static str, String> {
    for definition in DEFINITIONS {
        if definition.name == name {
            return if definition.kind == Kind::Histogram {
                Err(format!(
                    "{name} is a histogram: select {name}_bucket, _sum or _count"
                ))
            } else {
                Ok(definition.name)
            };
        }
        if definition.kind == Kind::Histogram
            && ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(definition.name))
        {
            return Ok(definition.name);
        }
    }
    Err(format!("{name} is not defined in src/metrics.rs"))
}

#[test]
fn metric_name_extraction_skips_functions_labels_strings_and_ranges() {
    let names = panels::metric_names(
        r#"histogram_quantile(0.99, sum by (type, le) (rate(raftq_a_bucket{instance=~"$x", kind="raftq_fake}"}[5m])))
           / on (instance) group_left (role) max without (le) (raftq_b) > bool 1 offset 5m
           + sum(raftq_d) by (job)
           or vector(0) unless raftq_c:recorded"#,
    );
    let expected: BTreeSet<String> = ["raftq_a_bucket", "raftq_b", "raftq_c:recorded", "raftq_d"]
        .iter()
        .map(|name| name.to_string())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn metric_names_resolve_only_to_definitions_and_histogram_series() {
    assert_eq!(
        resolve("raftq_wal_fsync_duration_seconds_bucket"),
        Ok("raftq_wal_fsync_duration_seconds")
    );
    assert_eq!(resolve("raftq_raft_term"), Ok("raftq_raft_term"));
    assert!(resolve("raftq_wal_fsync_duration_seconds").is_err());
    assert!(resolve("raftq_raft_term_bucket").is_err());
    assert!(resolve("raftq_no_such_metric").is_err());
}

#[test]
fn every_metric_a_panel_names_is_defined_in_src_metrics() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for dashboard in panels::load_dashboards() {
        let variables = panels::variables(&dashboard);
        let exprs = panels::panel_queries(&dashboard)
            .into_iter()
            .map(|query| {
                (
                    format!("panel {:?} {}", query.panel, query.ref_id),
                    query.expr,
                )
            })
            .chain(variables.iter().map(|variable| {
                // Only the selector of label_values(selector, label) names
                // a metric; a query of another form is checked whole.
                let selector = panels::label_values_query(&variable.query)
                    .map_or_else(|| variable.query.clone(), |(selector, _)| selector);
                (format!("variable {}", variable.name), selector)
            }));
        for (place, expr) in exprs {
            let names = panels::metric_names(&expr);
            if names.is_empty() {
                problems.push(format!(
                    "{} {place}: names no metric: {expr}",
                    dashboard.file
                ));
            }
            for name in names {
                checked += 1;
                if let Err(problem) = resolve(&name) {
                    problems.push(format!("{} {place}: {problem}", dashboard.file));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0);
}

#[test]
fn dashboards_use_the_provisioned_datasource_and_the_instance_and_queue_variables() {
    let uids = panels::provisioned_datasource_uids();
    assert_eq!(
        uids.iter().map(|(_, uid)| uid.as_str()).collect::<Vec<_>>(),
        [DATASOURCE_UID],
        "grafana/provisioning/datasources must provision exactly one datasource, uid {DATASOURCE_UID}"
    );
    let provider_directory = panels::repository_root().join("grafana/provisioning/dashboards");
    let providers = std::fs::read_dir(&provider_directory)
        .expect("grafana/provisioning/dashboards exists")
        .filter(|entry| panels::is_yaml(&entry.as_ref().expect("entry").path()))
        .count();
    assert!(
        providers > 0,
        "no dashboard provider in {provider_directory:?}"
    );

    let mut problems = Vec::new();
    for dashboard in panels::load_dashboards() {
        let variables = panels::variables(&dashboard);
        let names: Vec<&str> = variables
            .iter()
            .map(|variable| variable.name.as_str())
            .collect();
        let wanted: &[&str] = if dashboard.file.contains("queues") {
            &["instance", "queue"]
        } else {
            &["instance"]
        };
        for name in wanted {
            if !names.contains(name) {
                problems.push(format!("{}: no template variable {name}", dashboard.file));
            }
        }
        for variable in &variables {
            if variable.datasource_uid.as_deref() != Some(DATASOURCE_UID) {
                problems.push(format!(
                    "{}: variable {} uses datasource {:?}",
                    dashboard.file, variable.name, variable.datasource_uid
                ));
            }
        }
        for panel in panels::panels_without_queries(&dashboard) {
            problems.push(format!("{}: panel {panel:?} has no query", dashboard.file));
        }
        for query in panels::panel_queries(&dashboard) {
            if query.datasource_uid.as_deref() != Some(DATASOURCE_UID) {
                problems.push(format!(
                    "{}: panel {:?} uses datasource {:?}",
                    dashboard.file, query.panel, query.datasource_uid
                ));
            }
            if !query.expr.contains("$instance") {
                problems.push(format!(
                    "{}: panel {:?} ignores $instance",
                    dashboard.file, query.panel
                ));
            }
            let per_queue = panels::metric_names(&query.expr).iter().any(|name| {
                DEFINITIONS.iter().any(|definition| {
                    resolve(name) == Ok(definition.name) && definition.labels.contains(&"queue")
                })
            });
            if per_queue && !query.expr.contains("$queue") {
                problems.push(format!(
                    "{}: panel {:?} ignores $queue",
                    dashboard.file, query.panel
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The binaries of Debian's `prometheus` package, or None when the test
/// may be skipped.
fn prometheus_tools() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let required = std::env::var("RAFTQ_REQUIRE_PROMETHEUS").is_ok_and(|value| value == "1");
    let server = prometheus::find_tool("prometheus");
    let promtool = prometheus::find_tool("promtool");
    match (server, promtool) {
        (Some(server), Some(promtool)) => Some((server, promtool)),
        _ if required => panic!(
            "RAFTQ_REQUIRE_PROMETHEUS=1 but prometheus or promtool is not installed \
             (apt-get install prometheus)"
        ),
        _ => {
            println!("skipped: prometheus not installed");
            None
        }
    }
}

fn scrapes_required() -> u64 {
    std::env::var("RAFTQ_DASHBOARD_SCRAPES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(8)
        .max(3)
}

/// Whether a query's answer counts as data: at least one sample, and at
/// least one finite value (a quantile of an idle histogram is NaN).
fn has_data(samples: &[(serde_json::Value, f64)]) -> bool {
    samples.iter().any(|(_, value)| value.is_finite())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_query_returns_data_from_a_real_prometheus_scraping_a_real_cluster() {
    let Some((prometheus_binary, promtool)) = prometheus_tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);

    let mut nodes = ProcessCluster::start(3, directory.path());
    let counts = Arc::new(LoadCounts::default());
    let stop = CancellationToken::new();
    let load = tokio::spawn(cluster::run_load(
        nodes.nodes.clone(),
        Arc::clone(&counts),
        stop.clone(),
    ));

    let prometheus_directory = directory.path().join("prometheus");
    std::fs::create_dir_all(&prometheus_directory).expect("prometheus directory");
    let mut server = Prometheus::start(
        &prometheus_binary,
        &prometheus_directory,
        &nodes.metrics_addresses(),
    );
    server.wait_ready(deadline).await;
    wait_for_scrapes(&server, &mut nodes, directory.path(), deadline).await;

    // Every query of every panel, and every template variable, with "All"
    // selected, until each has data (the first scrapes of a series may
    // still be missing a rate window).
    let dashboards = panels::load_dashboards();
    let mut queries: Vec<(PanelQuery, String)> = Vec::new();
    let mut variables: Vec<Variable> = Vec::new();
    for dashboard in &dashboards {
        let own = panels::variables(dashboard);
        for query in panels::panel_queries(dashboard) {
            let expr = panels::substitute(&query.expr, &own);
            queries.push((query, expr));
        }
        variables.extend(own);
    }
    let mut answered: BTreeMap<usize, usize> = BTreeMap::new();
    let mut failures: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        failures.clear();
        for (position, (query, expr)) in queries.iter().enumerate() {
            if answered.contains_key(&position) {
                continue;
            }
            match server.query(expr).await {
                Ok(samples) if has_data(&samples) => {
                    answered.insert(position, samples.len());
                }
                Ok(samples) => {
                    failures.insert(
                        position,
                        format!(
                            "{} / {:?} {}: {} series, none with a finite value: {expr}",
                            query.dashboard,
                            query.panel,
                            query.ref_id,
                            samples.len()
                        ),
                    );
                }
                Err(error) => {
                    // A query that does not parse never will: fail at once.
                    panic!(
                        "{} / {:?} {}: {error}\n  query: {expr}",
                        query.dashboard, query.panel, query.ref_id
                    );
                }
            }
        }
        if failures.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        nodes.assert_running(directory.path());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        failures.is_empty(),
        "panel queries without data:\n{}",
        failures.into_values().collect::<Vec<_>>().join("\n")
    );

    let mut variable_values = Vec::new();
    for variable in &variables {
        let (selector, label) = panels::label_values_query(&variable.query).unwrap_or_else(|| {
            panic!(
                "{}: variable {} is not a label_values query: {}",
                variable.dashboard, variable.name, variable.query
            )
        });
        let selector = panels::substitute(&selector, &variables);
        let values = server
            .label_values(&selector, &label)
            .await
            .unwrap_or_else(|error| panic!("variable {}: {error}", variable.name));
        assert!(
            !values.is_empty(),
            "{}: variable {} has no values",
            variable.dashboard,
            variable.name
        );
        variable_values.push(format!("{}={}", variable.name, values.join(",")));
    }

    // The queue label cap holds on a real node: the fourth queue is `other`.
    let queue_labels = server
        .label_values("raftq_queue_jobs", "queue")
        .await
        .expect("queue label values");
    assert!(
        queue_labels
            .iter()
            .any(|label| label == raftq::metrics::OTHER_QUEUE_LABEL),
        "no queue labelled other beyond the cap: {queue_labels:?}"
    );
    let per_node = server
        .query("count by (instance) (count by (instance, queue) (raftq_queue_jobs))")
        .await
        .expect("count queue labels");
    for (labels, count) in &per_node {
        assert!(
            *count <= (cluster::QUEUE_LABELS_MAX + 1) as f64,
            "{labels}: {count} queue labels, cap {}",
            cluster::QUEUE_LABELS_MAX
        );
    }

    let exposition = check_exposition(&nodes, &promtool).await;

    stop.cancel();
    load.await.expect("load task");
    let total: usize = answered.values().sum();
    println!(
        "dashboards: {} panel queries in {} dashboards evaluated through Prometheus \
         ({} scrapes of 3 nodes each): all returned data ({total} series)",
        queries.len(),
        dashboards.len(),
        scrapes_required()
    );
    println!("template variables: {}", variable_values.join("  "));
    println!("{exposition}");
    println!("load: {counts:?}");
}

/// Waits until every node is up in Prometheus and it holds enough scrapes.
async fn wait_for_scrapes(
    server: &Prometheus,
    nodes: &mut ProcessCluster,
    directory: &std::path::Path,
    deadline: tokio::time::Instant,
) {
    let wanted = scrapes_required();
    let expr = format!(
        "min(count_over_time(up{{job=\"{}\"}}[5m])) and on () count(up{{job=\"{}\"}} == 1) == 3",
        prometheus::JOB,
        prometheus::JOB
    );
    loop {
        nodes.assert_running(directory);
        if let Ok(samples) = server.query(&expr).await
            && samples
                .first()
                .is_some_and(|(_, scrapes)| *scrapes >= wanted as f64)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus did not scrape every node {wanted} times in time:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Fetches every node's /metrics: `promtool check metrics` must find
/// nothing to complain about, and every metric src/metrics.rs defines must
/// be exported by some node, with its help text and as its kind (histograms
/// as histograms, not summaries).
async fn check_exposition(nodes: &ProcessCluster, promtool: &std::path::Path) -> String {
    let mut exported: BTreeMap<String, (String, String)> = BTreeMap::new();
    for node in &nodes.nodes {
        let response = dashboards::http::get(&node.metrics, "/metrics")
            .await
            .unwrap_or_else(|error| panic!("GET /metrics of node {}: {error}", node.id));
        assert_eq!(response.status, 200, "node {}: {}", node.id, response.body);
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("promtool stdin");
            stdin
                .write_all(response.body.as_bytes())
                .expect("feed promtool");
        }
        let output = child.wait_with_output().expect("promtool output");
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && complaints.trim().is_empty(),
            "promtool check metrics on node {} ({}):\n{complaints}",
            node.id,
            output.status
        );
        for line in response.body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                exported.entry(name.to_string()).or_default().0 = kind.to_string();
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                exported.entry(name.to_string()).or_default().1 = help.to_string();
            }
        }
    }
    let mut problems = Vec::new();
    for definition in DEFINITIONS {
        let kind = match definition.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        match exported.get(definition.name) {
            None => problems.push(format!("{} is exported by no node", definition.name)),
            Some((exported_kind, help)) => {
                if exported_kind != kind {
                    problems.push(format!(
                        "{} is exported as a {exported_kind}, defined as a {kind}",
                        definition.name
                    ));
                }
                if help.is_empty() {
                    problems.push(format!("{} is exported without help", definition.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    format!(
        "exposition: promtool check metrics clean on {} nodes; all {} metrics of src/metrics.rs exported with help and their kind",
        nodes.nodes.len(),
        DEFINITIONS.len()
    )
}
