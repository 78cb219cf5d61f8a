//! The server's own figures around a swarm (with `--admin-url`): its `/metrics` read before and
//! after, and the difference: CPU seconds, resident memory, group commits and appends per commit.

use anyhow::Context;
use prometheus_parse::{Scrape, Value};
use serde::Serialize;
use std::time::Duration;

/// What one read of `/metrics` says (the parts the report uses).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: f64,
    pub group_commits: f64,
    /// Appends written by all group commits (the sum of `warden_store_appends_per_commit`).
    pub appends: f64,
    /// Commands the server answered, every kind and outcome.
    pub commands: f64,
}

/// The server side of a run, as the report shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerFigures {
    /// CPU seconds the server process used during the run.
    pub cpu_seconds: f64,
    /// That, as a share of one core over the run (100 = one core busy).
    pub cpu_percent_of_core: f64,
    /// Resident memory after the run.
    pub rss_bytes: u64,
    /// Group commits of the embedded store during the run (0 on MongoDB).
    pub group_commits: u64,
    /// Commands per group commit (appends / commits), when there were any.
    pub appends_per_commit: Option<f64>,
    /// Commands the server counted during the run.
    pub commands: u64,
}

/// `/metrics` under `admin_url` (a base like `http://127.0.0.1:7351`, or the full URL).
pub fn metrics_url(admin_url: &str) -> String {
    let base = admin_url.trim_end_matches('/');
    if base.ends_with("/metrics") {
        base.to_owned()
    } else {
        format!("{base}/metrics")
    }
}

/// Reads and parses the server's `/metrics`.
pub async fn sample(admin_url: &str) -> anyhow::Result<ServerSample> {
    let url = metrics_url(admin_url);
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot read {url}"))?
        .error_for_status()
        .with_context(|| format!("{url} refused"))?;
    let body = response.text().await.context("reading /metrics")?;
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .with_context(|| format!("{url} is not Prometheus text"))?;
    Ok(parse(&scrape))
}

fn parse(scrape: &Scrape) -> ServerSample {
    let sum = |name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    // Warden's own CPU counter is to the clock tick; the process collector's counts whole seconds.
    let precise = sum("warden_process_cpu_seconds_total");
    ServerSample {
        cpu_seconds: if precise > 0.0 {
            precise
        } else {
            sum("process_cpu_seconds_total")
        },
        rss_bytes: sum("process_resident_memory_bytes"),
        group_commits: sum("warden_store_group_commits_total"),
        appends: sum("warden_store_appends_per_commit_sum"),
        commands: sum("warden_commands_total"),
    }
}

/// The difference between two samples over a run of `duration`.
pub fn figures(before: ServerSample, after: ServerSample, duration: Duration) -> ServerFigures {
    let cpu = (after.cpu_seconds - before.cpu_seconds).max(0.0);
    let commits = (after.group_commits - before.group_commits).max(0.0);
    let appends = (after.appends - before.appends).max(0.0);
    ServerFigures {
        cpu_seconds: cpu,
        cpu_percent_of_core: 100.0 * cpu / duration.as_secs_f64().max(1e-9),
        rss_bytes: after.rss_bytes as u64,
        group_commits: commits as u64,
        appends_per_commit: (commits > 0.0).then(|| appends / commits),
        commands: (after.commands - before.commands).max(0.0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_the_difference_of_two_scrapes() {
        let text = |cpu: f64, commits: f64, appends: f64| {
            format!(
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
                 # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1048576\n\
                 # TYPE warden_store_group_commits_total counter\nwarden_store_group_commits_total {commits}\n\
                 # TYPE warden_store_appends_per_commit histogram\n\
                 warden_store_appends_per_commit_bucket{{le=\"+Inf\"}} {commits}\n\
                 warden_store_appends_per_commit_sum {appends}\n\
                 warden_store_appends_per_commit_count {commits}\n\
                 # TYPE warden_commands_total counter\n\
                 warden_commands_total{{kind=\"add\",outcome=\"applied\"}} {appends}\n"
            )
        };
        let scrape =
            |t: String| parse(&Scrape::parse(t.lines().map(|l| Ok(l.to_owned()))).unwrap());
        let before = scrape(text(1.5, 10.0, 20.0));
        let after = scrape(text(3.5, 110.0, 820.0));
        let f = figures(before, after, Duration::from_secs(4));
        assert_eq!(f.cpu_seconds, 2.0);
        assert_eq!(f.cpu_percent_of_core, 50.0);
        assert_eq!(f.rss_bytes, 1_048_576);
        assert_eq!(f.group_commits, 100);
        assert_eq!(f.appends_per_commit, Some(8.0));
        assert_eq!(f.commands, 800);
    }

    #[test]
    fn the_admin_url_may_name_the_base_or_metrics() {
        assert_eq!(metrics_url("http://h:7351"), "http://h:7351/metrics");
        assert_eq!(metrics_url("http://h:7351/"), "http://h:7351/metrics");
        assert_eq!(
            metrics_url("http://h:7351/metrics"),
            "http://h:7351/metrics"
        );
    }
}
