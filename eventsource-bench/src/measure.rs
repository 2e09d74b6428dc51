//! The timing harness of the PostgreSQL benchmarks: contestants run interleaved, round after
//! round in a rotating order (this machine is noisy, and a contestant that always ran first or
//! last would be favoured), warm-up rounds are dropped, and each figure is the median round.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The per-round timings of a few contestants measured side by side.
#[derive(Debug)]
pub struct Contest {
    names: Vec<&'static str>,
    warm_up: usize,
    /// Seconds per unit (event or operation), per contestant, per measured round.
    rounds: Vec<Vec<f64>>,
}

impl Contest {
    /// A contest between `names` (the first is the framework, the others are baselines) that
    /// ignores the first `warm_up` rounds.
    pub fn new(names: &[&'static str], warm_up: usize) -> Self {
        Contest {
            names: names.to_vec(),
            warm_up,
            rounds: vec![Vec::new(); names.len()],
        }
    }

    /// The order contestants run in, in round `round`: rotated by one every round.
    pub fn order(&self, round: usize) -> Vec<usize> {
        let n = self.names.len();
        (0..n).map(|i| (i + round) % n).collect()
    }

    /// Records that contestant `who` did `units` units of work in `elapsed` in round `round`.
    pub fn record(&mut self, round: usize, who: usize, units: u64, elapsed: Duration) {
        if round >= self.warm_up && units > 0 {
            self.rounds[who].push(elapsed.as_secs_f64() / units as f64);
        }
    }

    /// The median seconds per unit of contestant `who`.
    pub fn median(&self, who: usize) -> f64 {
        median(&self.rounds[who])
    }

    /// The ratios of contestant `who`'s time to contestant `other`'s, round by round (the two
    /// ran side by side in each round, so a slow moment of the machine weighs on both).
    pub fn paired_ratios(&self, who: usize, other: usize) -> Vec<f64> {
        self.rounds[who]
            .iter()
            .zip(&self.rounds[other])
            .map(|(a, b)| a / b)
            .collect()
    }

    /// The name of contestant `who`.
    pub fn name(&self, who: usize) -> &'static str {
        self.names[who]
    }

    /// How many contestants there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The contest of contestants `which` only, in that order (the first as the framework),
    /// with their rounds as measured: e.g. a second framework variant against the same
    /// baselines, from the same rounds.
    pub fn select(&self, which: &[usize]) -> Contest {
        Contest {
            names: which.iter().map(|&who| self.names[who]).collect(),
            warm_up: self.warm_up,
            rounds: which.iter().map(|&who| self.rounds[who].clone()).collect(),
        }
    }
}

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// The `q` quantile of `values` (0 for none), interpolating between neighbours.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let at = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64)
}

/// How a row shows its figures.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Throughput: units per second.
    PerSecond(&'static str),
    /// Latency: milliseconds per unit.
    Millis,
    /// Latency: microseconds per unit.
    Micros,
}

/// A results table: "scenario | framework | baseline | ratio", printed as Markdown.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    /// Adds the rows of a contest: the framework (contestant 0) against each baseline. The ratio
    /// is framework time over baseline time (1.10 = the framework takes 10% longer): the median
    /// of the round-by-round ratios, with their interquartile range in brackets. `target` (a
    /// ratio) is judged on the median, beside the baseline it applies to.
    pub fn add(
        &mut self,
        scenario: &str,
        contest: &Contest,
        unit: Unit,
        target: Option<(usize, f64)>,
    ) {
        let framework = contest.median(0);
        for who in 1..contest.len() {
            let baseline = contest.median(who);
            let ratios = contest.paired_ratios(0, who);
            let ratio = median(&ratios);
            let spread = format!(
                "[{:.2}–{:.2}]",
                quantile(&ratios, 0.25),
                quantile(&ratios, 0.75)
            );
            let verdict = match target {
                Some((applies_to, limit)) if applies_to == who => {
                    if ratio <= limit {
                        format!("{ratio:.2} {spread} (target ≤ {limit:.2}: met)")
                    } else {
                        format!("{ratio:.2} {spread} (target ≤ {limit:.2}: NOT met)")
                    }
                }
                _ => format!("{ratio:.2} {spread}"),
            };
            self.rows.push([
                if who == 1 {
                    scenario.to_owned()
                } else {
                    String::new()
                },
                if who == 1 {
                    show(framework, unit)
                } else {
                    String::new()
                },
                contest.name(who).to_owned(),
                show(baseline, unit),
                verdict,
            ]);
        }
    }

    /// Adds a row with a single figure and no baseline.
    pub fn add_figure(&mut self, scenario: &str, seconds_per_unit: f64, unit: Unit, note: &str) {
        self.rows.push([
            scenario.to_owned(),
            show(seconds_per_unit, unit),
            note.to_owned(),
            String::new(),
            String::new(),
        ]);
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let header = [
            "scenario",
            "framework",
            "raw baseline",
            "baseline",
            "ratio [interquartile]",
        ];
        let mut widths = header.map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (cell, w) in cells.iter().zip(widths) {
                let pad = w - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &header.map(str::to_owned));
        line(&mut out, &widths.map(|w| "-".repeat(w)));
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }
}

fn show(seconds_per_unit: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSecond(what) => format!("{} {what}/s", thousands(1.0 / seconds_per_unit)),
        Unit::Millis => format!("{:.2} ms", seconds_per_unit * 1e3),
        Unit::Micros => format!("{:.0} µs", seconds_per_unit * 1e6),
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Criterion's median estimate, in nanoseconds, of benchmark `id` of `group`, read from where
/// criterion stores it: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// workspace's `target/criterion`. `None` if that benchmark did not run.
pub fn criterion_median_ns(group: &str, id: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let path = home.join(group).join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
