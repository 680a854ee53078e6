//! A private Prometheus server for the test: its own config, storage
//! directory and port, started from Debian's `prometheus` binary and killed
//! when dropped. A Prometheus running as a system service is never used.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::http;

/// The scrape interval the test's Prometheus uses.
pub const SCRAPE_INTERVAL: &str = "1s";
/// The job name of the raftq targets.
pub const JOB: &str = "raftq";

/// Finds a tool of the `prometheus` package: on PATH, else in /usr/bin.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join(name))
            .collect::<Vec<_>>()
    });
    on_path
        .chain(std::iter::once(Path::new("/usr/bin").join(name)))
        .find(|candidate| candidate.is_file())
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub address: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `binary` scraping `targets` (host:port of metrics listeners),
    /// with its config, data and log under `directory`.
    pub fn start(binary: &Path, directory: &Path, targets: &[String]) -> Prometheus {
        let config = directory.join("prometheus.yml");
        let quoted: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  \
                 evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n  - job_name: {JOB}\n    \
                 static_configs:\n      - targets: [{}]\n",
                quoted.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let port = crate::ports::free_port();
        let address = format!("127.0.0.1:{port}");
        let log = directory.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Prometheus {
            child,
            address,
            log,
        }
    }

    /// The tail of Prometheus's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until Prometheus answers /-/ready.
    pub async fn wait_ready(&mut self, deadline: tokio::time::Instant) {
        loop {
            if let Some(status) = self.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited with {status}:\n{}", self.log_tail());
            }
            if let Ok(response) = http::get(&self.address, "/-/ready").await
                && response.status == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus is not ready in time:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Calls an API endpoint and returns `data`, or why it failed.
    pub async fn api(&self, path: &str) -> Result<Value, String> {
        let response = http::get(&self.address, path)
            .await
            .map_err(|error| format!("GET {path}: {error}"))?;
        let json: Value = serde_json::from_str(&response.body)
            .map_err(|error| format!("GET {path}: status {}, {error}", response.status))?;
        if json["status"] != "success" {
            return Err(format!(
                "{} ({}): {}",
                json["errorType"].as_str().unwrap_or("error"),
                response.status,
                json["error"].as_str().unwrap_or(&response.body)
            ));
        }
        Ok(json["data"].clone())
    }

    /// Evaluates an instant query; returns the result's samples as
    /// (labels, value).
    pub async fn query(&self, expr: &str) -> Result<Vec<(Value, f64)>, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", http::encode(expr)))
            .await?;
        let samples = match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sample| (sample["metric"].clone(), sample_value(&sample["value"])))
                .collect(),
            Some("scalar") => vec![(Value::Null, sample_value(&data["result"]))],
            other => return Err(format!("unexpected result type {other:?}")),
        };
        Ok(samples)
    }

    /// The values of `label` on the series `selector` matches.
    pub async fn label_values(&self, selector: &str, label: &str) -> Result<Vec<String>, String> {
        let data = self
            .api(&format!(
                "/api/v1/label/{label}/values?match[]={}",
                http::encode(selector)
            ))
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|value| value.as_str().map(str::to_string))
            .collect())
    }
}

/// The value of a `[timestamp, "value"]` pair; Prometheus writes NaN and
/// infinities as "NaN", "+Inf" and "-Inf".
fn sample_value(pair: &Value) -> f64 {
    match pair[1].as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(text) => text.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
