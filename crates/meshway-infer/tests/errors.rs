//! Bad inference scenarios give messages naming the file, line and key; the planner says
//! clearly when a scenario has no fabric.

use meshway_fabric::{plan_text, Catalog};
use meshway_infer::spec_from_text;

const GOOD: &str = "\
[[model]]
name = \"m\"
prefill-tokens-per-s = 10000
decode-tokens-per-s = 1000
max-batch = 8
prompt-tokens = 100
output-tokens = 10

[[site]]
name = \"a\"
gpus = 16

[[region]]
name = \"r\"
rate = 5
distance = { a = \"100km\" }
";

fn err(text: &str) -> String {
    spec_from_text(text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string()
}

#[test]
fn good_scenario_parses() {
    let s = spec_from_text(GOOD, "good.toml", &Catalog::builtin()).unwrap();
    assert_eq!(s.servers(), vec![2]);
    assert_eq!(s.policy.name(), "latency-aware");
}

#[test]
fn invalid_inference_scenarios() {
    assert_eq!(
        err(&GOOD.replace("{ a = \"100km\" }", "{ b = \"100km\" }")),
        "bad.toml:16: `region[1].distance`: unknown site \"b\", expected one of a; did you mean \"a\"?"
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 12")),
        "bad.toml:11: `site[1].gpus`: 12 GPUs is not a whole number of 8-GPU servers of model \"m\""
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 1")),
        "bad.toml:11: `site[1].gpus`: 1 GPU is not a whole number of 8-GPU servers of model \"m\""
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 16\nmax-gpus = 20")),
        "bad.toml:12: `site[1].max-gpus`: 20 GPUs is not a whole number of 8-GPU servers of model \"m\""
    );
    assert_eq!(
        err(&GOOD.replace("max-batch = 8", "max-batch = 0")),
        "bad.toml:5: `model[1].max-batch`: expected 1 to 4096, got 0"
    );
    assert_eq!(
        err(&(GOOD.to_string() + "[inference]\npolicy = \"fastest\"\n")),
        "bad.toml:18:10: `inference.policy`: unknown value \"fastest\": expected one of nearest, least-loaded, latency-aware"
    );
    assert_eq!(
        err(&GOOD.replace("rate = 5", "rate = 5\narrivals = \"bursty\"\nburst-factor = 5")),
        "bad.toml:17: `region[1].burst-factor`: expected 1 to 4.000 (on-time share 0.250: the on periods alone would exceed the mean rate), got 5"
    );
    assert!(err(&GOOD.replace("rate = 5", "rat = 5")).contains("did you mean `rate`?"));
    // Names head every row of the reports: a bidirectional control would reverse the rest of
    // a row ("78.6ms" read backwards), an escape sequence would act on the terminal.
    assert_eq!(
        err(&GOOD.replace("name = \"a\"", "name = \"a\\u202e\"").replace("{ a =", "{ \"a\\u202e\" =")),
        "bad.toml:10: `site[1].name`: expected printable text, got the bidirectional control U+202E"
    );
    assert_eq!(
        err(&GOOD.replace("name = \"r\"", "name = \"r\\u001b[2J\"")),
        "bad.toml:14: `region[1].name`: expected printable text, got the control character '\\u{1b}'"
    );
    assert_eq!(
        err(&GOOD.replace("name = \"m\"", "name = \"m\\u2066\"")),
        "bad.toml:2: `model[1].name`: expected printable text, got the bidirectional control U+2066"
    );
    // An objective of 0 (every request misses), and a rate past the range shown short.
    assert_eq!(
        err(&GOOD.replace("rate = 5", "rate = 5\nttft-p99 = \"0s\"")),
        "bad.toml:16: `region[1].ttft-p99`: expected an objective above 0 (such as \"500ms\"): at 0 every request misses"
    );
    assert!(err(&GOOD.replace("rate = 5", "rate = 5\ntpot-p99 = \"0ms\""))
        .contains("`region[1].tpot-p99`: expected an objective above 0"));
    assert_eq!(
        err(&GOOD.replace("rate = 5", "rate = 1e300")),
        "bad.toml:15: `region[1].rate`: expected 0 to 10000000 requests per second, got 1e300"
    );
    // Paths past any on Earth, and hop counts that wrapped the path's sum to a shorter one.
    assert_eq!(
        err(&GOOD.replace("{ a = \"100km\" }", "{ a = \"1000000000km\" }")),
        "bad.toml:16: `region[1].distance`: a: expected at most 50000km (past any path on Earth)"
    );
    assert_eq!(
        err(&GOOD.replace("rate = 5\n", "rate = 5\nhops = { a = 4294967295 }\n")),
        "bad.toml:16: `region[1].hops`: a: expected at most 1000 hops"
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 16\naccess-hops = 1001")),
        "bad.toml:12: `site[1].access-hops`: expected at most 1000, got 1001"
    );
    // A path's fixed parts past any real path (they wrapped its sum past 2^64 ns), and
    // sites past any cluster built (4,294,967,295 GPUs asked for 756 GB).
    assert_eq!(
        err(&GOOD.replace("rate = 5\n", "rate = 5\nwan-fixed = { a = \"5124095h\" }\n")),
        "bad.toml:16: `region[1].wan-fixed`: a: expected at most 1s, got 18446742000s"
    );
    assert_eq!(
        err(&GOOD.replace("rate = 5\n", "rate = 5\nlast-mile = \"1001ms\"\n")),
        "bad.toml:16: `region[1].last-mile`: expected at most 1s, got 1.001s"
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 1048584")),
        "bad.toml:11: `site[1].gpus`: expected at most 1048576 GPUs a site, got 1048584"
    );
    assert_eq!(
        err(&GOOD.replace("gpus = 16", "gpus = 16\nmax-gpus = 4294967288")),
        "bad.toml:12: `site[1].max-gpus`: expected at most 1048576 GPUs a site, got 4294967288"
    );
    let e = Catalog::with_overlay("[inference]\nwan-fixed = \"2s\"\n", "mine.toml").unwrap_err().to_string();
    assert!(e.contains("wan-fixed must be at most 1s, got 2s"), "{e}");
    // The catalog's server size and access hops are checked in the catalog, naming its file
    // (a bad one was blamed on the scenario's model or site).
    for (key, want) in [
        ("gpus-per-server = 0", "gpus-per-server must be 1 to 1024, got 0"),
        ("access-hops = 5000", "access-hops must be at most 1000, got 5000"),
    ] {
        let e = Catalog::with_overlay(&format!("[inference]\n{key}\n"), "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains(want), "{e}");
    }
    assert_eq!(
        err(&GOOD.replace("[[region]]\nname = \"r\"\nrate = 5\ndistance = { a = \"100km\" }\n", "")),
        "bad.toml: `region`: no [[region]] tables: an inference scenario needs user regions"
    );
}

#[test]
fn planner_on_inference_scenario_is_a_clear_error() {
    let e = plan_text(GOOD, "inf.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert_eq!(
        e,
        "inf.toml:9: `site[1].fabric`: no fabric to plan: no [fabric] table and no [[site]] has a [site.fabric]; \
         for an inference scenario use `meshway infer` or `meshway place`"
    );
}

#[test]
fn multisite_fabric_names_the_site_without_a_fabric() {
    let text = "\
[[site]]
name = \"a\"
[site.fabric]
kind = \"leaf-spine\"
gpus = 64

[[site]]
name = \"b\"
gpus = 64

[[dci]]
a = \"a\"
b = \"b\"
distance = \"10km\"
";
    let e = plan_text(text, "ms.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert_eq!(
        e,
        "ms.toml:7: `site[2].fabric`: site \"b\" has no [site.fabric] table: a multi-site fabric needs one for every site"
    );
}
