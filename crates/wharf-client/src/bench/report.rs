//! What a bench run measured, as text and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{Tally, Workload};

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub workload: Option<Workload>,
    pub clients: usize,
    pub count: usize,
    /// Operations the run meant to do.
    pub planned: u64,
    /// Operations that completed.
    pub ok: u64,
    /// Operations (or sessions) that failed.
    pub errors: u64,
    /// Each distinct error message and how often it came.
    pub error_kinds: BTreeMap<String, u64>,
    /// Payload bytes moved by completed operations.
    pub bytes: u64,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// From the start of the first operation to the end of the last: what byte rates are
    /// measured over (logins before the first transfer are not part of it).
    pub busy: Duration,
    /// Latency of each completed operation, sorted.
    pub latencies: Vec<Duration>,
    /// The deadline stopped the run before every operation was started.
    pub stopped_by_deadline: bool,
    /// Idle workload: sessions logged in and held at once.
    pub held: usize,
    pub(super) window: Option<(Instant, Instant)>,
}

/// Distinct error messages kept per run (each with its count).
const MAX_ERROR_KINDS: usize = 8;

impl BenchReport {
    pub(super) fn merge(&mut self, other: Tally) {
        if let Some(w) = other.window {
            self.window = Some(match self.window {
                Some((a, b)) => (a.min(w.0), b.max(w.1)),
                None => w,
            });
        }
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.latencies.extend(other.latencies);
        for e in other.errors {
            self.errors += 1;
            let known = self.error_kinds.len();
            match self.error_kinds.get_mut(&e) {
                Some(n) => *n += 1,
                None if known < MAX_ERROR_KINDS => {
                    self.error_kinds.insert(e, 1);
                }
                None => {}
            }
        }
        self.stopped_by_deadline |= other.stopped;
    }

    /// Latency at quantile `q` (0..=1), nearest rank.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let n = self.latencies.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies.get(rank - 1).copied()
    }

    /// Megabytes (10^6 bytes) per second, from the first operation's start to the last one's
    /// end.
    pub fn megabytes_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.busy.as_secs_f64().max(1e-9)
    }

    /// Completed operations per second over the whole run.
    pub fn ops_per_sec(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// One JSON object.
    pub fn to_json(&self, target: &str) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "null".to_string(),
                |d| format!("{:.3}", d.as_secs_f64() * 1000.0),
            )
        };
        let errors: Vec<String> = self
            .error_kinds
            .iter()
            .map(|(text, n)| {
                format!(
                    "{{\"error\":{},\"count\":{n}}}",
                    crate::check::json_str(text)
                )
            })
            .collect();
        format!(
            concat!(
                "{{\"workload\":{},\"target\":{},\"clients\":{},\"count\":{},\"planned\":{},",
                "\"ok\":{},\"errors\":{},\"error_kinds\":[{}],\"bytes\":{},\"seconds\":{:.6},",
                "\"busy_seconds\":{:.6},\"megabytes_per_sec\":{:.3},\"ops_per_sec\":{:.3},",
                "\"latency_ms\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},",
                "\"held\":{},\"stopped_by_deadline\":{}}}"
            ),
            crate::check::json_str(self.workload.map_or("", Workload::name)),
            crate::check::json_str(target),
            self.clients,
            self.count,
            self.planned,
            self.ok,
            self.errors,
            errors.join(","),
            self.bytes,
            self.wall.as_secs_f64(),
            self.busy.as_secs_f64(),
            self.megabytes_per_sec(),
            self.ops_per_sec(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied()),
            self.held,
            self.stopped_by_deadline,
        )
    }

    /// A few lines for a person.
    pub fn render(&self, target: &str) -> String {
        let mut out = String::new();
        let name = self.workload.map_or("?", Workload::name);
        out.push_str(&format!(
            "wharf bench {name} {target}: {} client(s) x {}\n",
            self.clients, self.count
        ));
        out.push_str(&format!(
            "  done       {} of {} in {:.3} s, {} error(s){}\n",
            self.ok,
            self.planned,
            self.wall.as_secs_f64(),
            self.errors,
            if self.stopped_by_deadline {
                " (stopped at the time limit)"
            } else {
                ""
            }
        ));
        if self.workload.is_some_and(Workload::moves_bytes) {
            out.push_str(&format!(
                "  throughput {:.1} MB/s ({} bytes)\n",
                self.megabytes_per_sec(),
                self.bytes
            ));
        } else if self.workload == Some(Workload::Idle) {
            out.push_str(&format!("  held       {} sessions at once\n", self.held));
        } else {
            out.push_str(&format!(
                "  rate       {:.1} operations/s\n",
                self.ops_per_sec()
            ));
        }
        if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.latencies.last(),
        ) {
            let f = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
            out.push_str(&format!(
                "  latency    p50 {}  p90 {}  p99 {}  max {}\n",
                f(p50),
                f(p90),
                f(p99),
                f(*max)
            ));
        }
        for (text, n) in &self.error_kinds {
            out.push_str(&format!("  error      {n} x {text}\n"));
        }
        out
    }
}
