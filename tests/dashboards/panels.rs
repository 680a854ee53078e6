//! The dashboards in grafana/dashboards: their panels' queries, the
//! template variables they use, and the metric names a query refers to.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The dashboards every check runs over.
pub const DASHBOARD_FILES: &[&str] = &["raftq-cluster.json", "raftq-queues.json"];

/// What Grafana puts in for its built-in interval variables when the test
/// evaluates a query: Prometheus in the test scrapes every second, so a
/// ten-second rate window holds several samples, as `$__rate_interval`
/// (at least four scrape intervals) would in Grafana.
pub const BUILT_IN_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "10s"),
    ("$__interval", "1s"),
    ("$__range", "1m"),
];

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    pub datasource_uid: Option<String>,
}

/// One template variable of a dashboard.
#[derive(Debug, Clone)]
pub struct Variable {
    pub dashboard: String,
    pub name: String,
    pub query: String,
    pub datasource_uid: Option<String>,
    pub all_value: Option<String>,
}

/// A dashboard file, parsed.
pub struct Dashboard {
    pub file: String,
    pub json: Value,
}

pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn load_dashboards() -> Vec<Dashboard> {
    DASHBOARD_FILES
        .iter()
        .map(|file| {
            let path = repository_root().join("grafana/dashboards").join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
            Dashboard {
                file: file.to_string(),
                json,
            }
        })
        .collect()
}

fn uid_of(datasource: Option<&Value>) -> Option<String> {
    datasource?.get("uid")?.as_str().map(str::to_string)
}

/// Every query of every panel, rows' nested panels included.
pub fn panel_queries(dashboard: &Dashboard) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    let mut stack: Vec<&Value> = dashboard.json["panels"]
        .as_array()
        .map(|panels| panels.iter().collect())
        .unwrap_or_default();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            stack.extend(nested);
        }
        let title = panel["title"].as_str().unwrap_or("").to_string();
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = target["expr"].as_str().unwrap_or_else(|| {
                panic!(
                    "{}: panel {title:?} has a target without expr",
                    dashboard.file
                )
            });
            queries.push(PanelQuery {
                dashboard: dashboard.file.clone(),
                panel: title.clone(),
                ref_id: target["refId"].as_str().unwrap_or("?").to_string(),
                expr: expr.to_string(),
                datasource_uid: uid_of(target.get("datasource"))
                    .or_else(|| uid_of(panel.get("datasource"))),
            });
        }
    }
    queries.sort_by(|a, b| (&a.panel, &a.ref_id).cmp(&(&b.panel, &b.ref_id)));
    queries
}

/// Every panel (rows excluded) and whether it has at least one query.
pub fn panels_without_queries(dashboard: &Dashboard) -> Vec<String> {
    let mut missing = Vec::new();
    let mut stack: Vec<&Value> = dashboard.json["panels"]
        .as_array()
        .map(|panels| panels.iter().collect())
        .unwrap_or_default();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            stack.extend(nested);
        }
        let is_row = panel["type"] == "row";
        let targets = panel.get("targets").and_then(Value::as_array);
        if !is_row && targets.is_none_or(|targets| targets.is_empty()) {
            missing.push(panel["title"].as_str().unwrap_or("").to_string());
        }
    }
    missing
}

/// The dashboard's template variables.
pub fn variables(dashboard: &Dashboard) -> Vec<Variable> {
    dashboard.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|variable| {
            let query = match &variable["query"] {
                Value::String(query) => query.clone(),
                object => object["query"].as_str().unwrap_or("").to_string(),
            };
            Variable {
                dashboard: dashboard.file.clone(),
                name: variable["name"].as_str().unwrap_or("").to_string(),
                query,
                datasource_uid: uid_of(variable.get("datasource")),
                all_value: variable["allValue"].as_str().map(str::to_string),
            }
        })
        .collect()
}

/// Replaces Grafana's variables the way Grafana would with "All" selected:
/// the dashboard's own variables by their `allValue`, the built-in ones by
/// [`BUILT_IN_VARIABLES`]. Panics on a variable it does not know.
pub fn substitute(expr: &str, variables: &[Variable]) -> String {
    let mut text = expr.to_string();
    for (name, value) in BUILT_IN_VARIABLES {
        text = text.replace(name, value);
    }
    // Longer names first, so `$queue_x` is not taken for `$queue`.
    let mut own: Vec<&Variable> = variables.iter().collect();
    own.sort_by_key(|variable| std::cmp::Reverse(variable.name.len()));
    for variable in own {
        let value = variable
            .all_value
            .as_deref()
            .unwrap_or_else(|| panic!("variable {} has no allValue", variable.name));
        text = text
            .replace(&format!("${{{}}}", variable.name), value)
            .replace(&format!("${}", variable.name), value);
    }
    assert!(
        !text.contains('$'),
        "unknown variable left in {expr:?} after substitution: {text:?}"
    );
    text
}

/// Grouping keywords whose parenthesised list holds label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Aggregation operators, which may put `by (…)` or `without (…)` between
/// their name and their parenthesised argument.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords that stand alone in an expression.
const KEYWORDS: &[&str] = &[
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions or aggregations (followed by `(`), not keywords, not label
/// names (inside `{…}` or after `by`, `without`, `on`…) and not inside a
/// string literal or a `[…]` range.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    #[derive(Debug, PartialEq)]
    enum Token {
        Identifier(String),
        Open,
        Close,
        Other,
    }
    let mut tokens = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut position = 0;
    while position < chars.len() {
        let character = chars[position];
        match character {
            _ if character.is_whitespace() => position += 1,
            '"' | '\'' | '`' => {
                position += 1;
                while position < chars.len() && chars[position] != character {
                    if chars[position] == '\\' && character != '`' {
                        position += 1;
                    }
                    position += 1;
                }
                position += 1;
                tokens.push(Token::Other);
            }
            '{' | '[' => {
                let close = if character == '{' { '}' } else { ']' };
                // Label matchers and ranges; strings inside may hold a brace.
                position += 1;
                while position < chars.len() && chars[position] != close {
                    if chars[position] == '"' || chars[position] == '\'' {
                        let quote = chars[position];
                        position += 1;
                        while position < chars.len() && chars[position] != quote {
                            if chars[position] == '\\' {
                                position += 1;
                            }
                            position += 1;
                        }
                    }
                    position += 1;
                }
                position += 1;
                tokens.push(Token::Other);
            }
            '(' => {
                tokens.push(Token::Open);
                position += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                position += 1;
            }
            _ if character.is_ascii_digit() || character == '.' => {
                // Numbers and durations (5m, 1e3, 0x1f) are one token.
                while position < chars.len()
                    && (chars[position].is_ascii_alphanumeric() || chars[position] == '.')
                {
                    position += 1;
                }
                tokens.push(Token::Other);
            }
            _ if character.is_ascii_alphabetic() || character == '_' || character == ':' => {
                let start = position;
                while position < chars.len()
                    && (chars[position].is_ascii_alphanumeric()
                        || chars[position] == '_'
                        || chars[position] == ':')
                {
                    position += 1;
                }
                tokens.push(Token::Identifier(chars[start..position].iter().collect()));
            }
            _ => {
                tokens.push(Token::Other);
                position += 1;
            }
        }
    }
    let mut names = BTreeSet::new();
    let mut index = 0;
    while index < tokens.len() {
        if let Token::Identifier(identifier) = &tokens[index] {
            let lowercase = identifier.to_ascii_lowercase();
            let followed_by_open = match tokens.get(index + 1) {
                Some(Token::Open) => true,
                Some(Token::Identifier(next)) => {
                    AGGREGATIONS.contains(&lowercase.as_str())
                        && ["by", "without"].contains(&next.to_ascii_lowercase().as_str())
                }
                _ => false,
            };
            if followed_by_open && LABEL_LIST_KEYWORDS.contains(&lowercase.as_str()) {
                // Skip the label list up to its closing parenthesis.
                index += 2;
                while index < tokens.len() && tokens[index] != Token::Close {
                    index += 1;
                }
            } else if !followed_by_open && !KEYWORDS.contains(&lowercase.as_str()) {
                names.insert(identifier.clone());
            }
        }
        index += 1;
    }
    names
}

/// The metric a template variable's `label_values(selector, label)` query
/// looks at, with its selector and label.
pub fn label_values_query(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// The datasource uid the provisioning file gives Prometheus.
pub fn provisioned_datasource_uids() -> Vec<(PathBuf, String)> {
    let directory = repository_root().join("grafana/provisioning/datasources");
    let mut uids = Vec::new();
    for entry in std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
    {
        let path = entry.expect("directory entry").path();
        if !is_yaml(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read datasource provisioning");
        for line in text.lines() {
            if let Some(uid) = line.trim().strip_prefix("uid:") {
                uids.push((path.clone(), uid.trim().trim_matches('"').to_string()));
            }
        }
    }
    uids
}

pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml")
    )
}
