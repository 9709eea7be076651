//! Posting logout tokens to a receiver as an OP does (`application/x-www-form-urlencoded`,
//! `logout_token=...`), one at a time with the answer kept, or as a closed-loop load over several
//! connections with the latencies kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body, lossily decoded, at most 1 KiB.
    pub body: String,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

/// The form body an OP posts.
pub fn form_body(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish()
}

/// POST one logout token to `url`.
pub async fn post(http: &reqwest::Client, url: &str, token: &str) -> Result<Reply, reqwest::Error> {
    let started = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(token))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    let shown = body.get(..1024).unwrap_or(&body);
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(shown).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// The outcome of a load.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no HTTP answer (connection refused or reset, timeout).
    pub transport_errors: usize,
    /// Wall-clock time of the whole load.
    pub elapsed: Duration,
    /// Latency of every answered request, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    /// Requests sent.
    pub fn sent(&self) -> usize {
        self.statuses.values().sum::<usize>() + self.transport_errors
    }

    /// Requests per second over the whole load.
    pub fn rate(&self) -> f64 {
        self.sent() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Answers with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// The `p`th percentile latency (nearest rank), zero when nothing was answered.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies
            .get(rank.clamp(1, n) - 1)
            .copied()
            .unwrap_or_default()
    }
}

/// Send every token once, over `connections` kept-alive connections each sending its next token
/// as soon as the previous one is answered. The clients are built before the clock starts
/// (building one loads the TLS roots, which would otherwise delay the first answers).
pub async fn load(url: &str, tokens: Arc<Vec<String>>, connections: usize) -> LoadReport {
    let connections = connections.max(1);
    let clients: Vec<Option<reqwest::Client>> = (0..connections)
        .map(|_| {
            // One connection per worker: its own client with a single pooled connection.
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .ok()
        })
        .collect();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (worker, http) in clients.into_iter().enumerate() {
        let (tokens, url) = (Arc::clone(&tokens), url.to_owned());
        workers.spawn(async move {
            let mut report = LoadReport::default();
            let mine = tokens.iter().skip(worker).step_by(connections);
            let Some(http) = http else {
                report.transport_errors = mine.count();
                return report;
            };
            for token in mine {
                match post(&http, &url, token).await {
                    Ok(reply) => {
                        *report.statuses.entry(reply.status).or_default() += 1;
                        report.latencies.push(reply.elapsed);
                    }
                    Err(_) => report.transport_errors += 1,
                }
            }
            report
        });
    }
    let mut total = LoadReport::default();
    while let Some(joined) = workers.join_next().await {
        let Ok(part) = joined else { continue };
        for (status, n) in part.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        total.transport_errors += part.transport_errors;
        total.latencies.extend(part.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}
