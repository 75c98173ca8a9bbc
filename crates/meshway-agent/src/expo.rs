//! The Prometheus text exposition, written by the `prometheus` crate's encoder from metric
//! families the agent builds at each scrape out of its state (a snapshot, as a custom
//! collector does): the crate owns the format (HELP and TYPE lines, escaping, histogram
//! suffixes, `le` labels, `+Inf`), meshway owns the names and values.

use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Encoder;

/// The content type of what [`Families::encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric families in the order they were opened.
#[derive(Debug, Default)]
pub struct Families {
    fams: Vec<MetricFamily>,
}

fn labels(l: &[(&str, &str)]) -> Vec<LabelPair> {
    l.iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name((*k).to_string());
            p.set_value((*v).to_string());
            p
        })
        .collect()
}

impl Families {
    /// Opens a family; the samples added next belong to it.
    pub fn family(&mut self, name: &str, typ: MetricType, help: &str) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(typ);
        self.fams.push(f);
    }

    fn push(&mut self, m: Metric) {
        // A sample before any family is a programming error; it is dropped rather than
        // written under no name.
        if let Some(f) = self.fams.last_mut() {
            f.mut_metric().push(m);
        }
    }

    /// A gauge sample of the open family.
    pub fn gauge(&mut self, l: &[(&str, &str)], v: f64) {
        let mut g = Gauge::default();
        g.set_value(v);
        let mut m = Metric::from_label(labels(l));
        m.set_gauge(g);
        self.push(m);
    }

    /// A counter sample of the open family.
    pub fn counter(&mut self, l: &[(&str, &str)], v: u64) {
        let mut c = Counter::default();
        c.set_value(v as f64);
        let mut m = Metric::from_label(labels(l));
        m.set_counter(c);
        self.push(m);
    }

    /// A histogram sample of the open family: `buckets` are (upper bound, count in that bucket
    /// alone); the encoder is given them cumulated, with `+Inf` as `count`.
    pub fn histogram(&mut self, l: &[(&str, &str)], buckets: &[(f64, u64)], count: u64, sum: f64) {
        let mut cum = 0;
        let bs = buckets
            .iter()
            .map(|&(le, n)| {
                cum += n;
                let mut b = Bucket::default();
                b.set_upper_bound(le);
                b.set_cumulative_count(cum);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_bucket(bs);
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        let mut m = Metric::from_label(labels(l));
        m.set_histogram(h);
        self.push(m);
    }

    /// The text exposition (format 0.0.4). Families without a sample are left out, as
    /// client libraries do.
    pub fn encode(self) -> String {
        let fams: Vec<MetricFamily> = self.fams.into_iter().filter(|f| !f.get_metric().is_empty()).collect();
        let mut out = Vec::default();
        match prometheus::TextEncoder::new().encode(&fams, &mut out) {
            Ok(()) => infinities(String::from_utf8(out).unwrap_or_default()),
            // Only an empty family or name fails, and neither is passed on.
            Err(e) => format!("# exposition failed: {e}\n"),
        }
    }
}

/// Sample values as the format spells infinities, `+Inf` and `-Inf`: the encoder writes
/// Rust's `inf`. The value is a sample line's last field (no timestamps are written).
fn infinities(text: String) -> String {
    if !text.contains("inf\n") {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        match (line.starts_with('#'), line.rsplit_once(' ')) {
            (false, Some((head, "inf"))) => out.push_str(&format!("{head} +Inf")),
            (false, Some((head, "-inf"))) => out.push_str(&format!("{head} -Inf")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_as_prometheus_text() {
        let mut f = Families::default();
        f.family("a_total", MetricType::COUNTER, "Things \\ counted.");
        f.counter(&[("target", "x\"y\nz")], 3);
        f.family("empty", MetricType::GAUGE, "No samples: left out.");
        f.family("h_seconds", MetricType::HISTOGRAM, "A histogram.");
        f.histogram(&[("target", "t")], &[(0.001, 2), (0.01, 1)], 4, 0.5);
        let s = f.encode();
        assert_eq!(
            s,
            "# HELP a_total Things \\\\ counted.\n# TYPE a_total counter\na_total{target=\"x\\\"y\\nz\"} 3\n\
             # HELP h_seconds A histogram.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{target=\"t\",le=\"0.001\"} 2\nh_seconds_bucket{target=\"t\",le=\"0.01\"} 3\n\
             h_seconds_bucket{target=\"t\",le=\"+Inf\"} 4\nh_seconds_sum{target=\"t\"} 0.5\nh_seconds_count{target=\"t\"} 4\n"
        );
    }
}
