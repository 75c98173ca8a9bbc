//! The serving model built from a model's shape: closed forms for a lone request and the
//! KV cache, invariants under load, and bad input.

use meshway_fabric::Catalog;
use meshway_infer::spec::{Cost, Shape};
use meshway_infer::{simulate, spec_from_text, Run};

/// One site with one server of `model`, one region at zero distance with `region`.
fn scenario(model: &str, region: &str, duration: &str) -> String {
    format!(
        "[inference]\nduration = \"{duration}\"\npolicy = \"nearest\"\n\
         [[model]]\nname = \"m\"\n{model}\n\n\
         [[site]]\nname = \"s\"\ngpus = 1\naccess-hops = 0\n\n\
         [[region]]\nname = \"r\"\n{region}\nlast-mile = \"0ms\"\nfiber = {{ s = \"0km\" }}\n\
         wan-fixed = {{ s = \"0ns\" }}\nttft-p99 = \"10s\"\n"
    )
}

/// Llama 3.1 8B in BF16 on one H100 with every serving figure given, so the closed forms
/// below depend only on the model's shape and the GPU's catalog entry (81,559 MiB of memory,
/// 3.35 TB/s, a measured BF16 matmul rate of 794.5 TFLOPS).
const EIGHT_B: &str = "llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 1\nprecision = \"bf16\"\n\
    flops-efficiency = 0.5\nbandwidth-efficiency = 0.8\nstep-overhead = \"1ms\"\nrequest-overhead = \"5ms\"\n\
    memory-utilization = 0.9\nmemory-reserve = \"2GB\"\nmax-batch = 64\ntoken-budget = 8192";

fn shape(text: &str) -> Shape {
    let spec = spec_from_text(text, "t.toml", &Catalog::builtin()).unwrap();
    match &spec.models[0].cost {
        Cost::Shape(s) => (**s).clone(),
        Cost::Rated { .. } => panic!("expected a shaped model"),
    }
}

/// KV bytes per token = 2 (K and V) x layers x KV heads x head dim x bytes; capacity =
/// (GPUs x (memory - reserve) - weights) x utilization / bytes per token.
#[test]
fn kv_cache_arithmetic() {
    let s = shape(&scenario(&format!("{EIGHT_B}\nprompt-tokens = 1000\noutput-tokens = 11"), "concurrency = 1", "1ns"));
    assert_eq!(s.kv_bytes_per_token, 2.0 * 32.0 * 8.0 * 128.0 * 2.0); // 131,072 B
    assert_eq!(s.weight_bytes, 8.03e9 * 2.0);
    let room: f64 = (81_559.0 * 1_048_576.0 - 2e9 - 8.03e9 * 2.0) * 0.9;
    assert_eq!(s.kv_capacity_tokens, (room / 131_072.0).floor() as u64);
    assert_eq!(s.kv_capacity_tokens, 463_216);

    // 70B in FP8 over 8 GPUs: FP8 KV cache of 163,840 B per token.
    let m70 = "llm = \"llama-3.1-70b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 8\nprecision = \"fp8\"\n\
               memory-utilization = 0.9\nmemory-reserve = \"2GB\"\nprompt-tokens = 1000\noutput-tokens = 100";
    let text = scenario(m70, "concurrency = 1", "1ns").replace("gpus = 1", "gpus = 8");
    let s = shape(&text);
    assert_eq!(s.kv_bytes_per_token, 2.0 * 80.0 * 8.0 * 128.0);
    assert_eq!(s.kv_replication, 1.0);
    let room: f64 = (8.0 * (81_559.0 * 1_048_576.0 - 2e9) - 70.6e9) * 0.9;
    assert_eq!(s.kv_capacity_tokens, (room / 163_840.0).floor() as u64);

    // The 8B's 8 KV heads over 16 GPUs (of an NVL72 rack's NVLink domain): each GPU keeps a
    // copy of the one it attends with, so a token holds twice its bytes in the server (a KV
    // transfer still moves them once).
    let m16 = format!(
        "{}\nprompt-tokens = 1000\noutput-tokens = 11",
        EIGHT_B.replace("gpus-per-server = 1", "gpus-per-server = 16").replace("h100-sxm", "gb200")
    );
    let tp16 = scenario(&m16, "concurrency = 1", "1ns").replace("gpus = 1", "gpus = 16");
    let s = shape(&tp16);
    assert_eq!((s.kv_bytes_per_token, s.kv_replication), (131_072.0, 2.0));
    let room: f64 = (16.0 * (186e9 - 2e9) - 8.03e9 * 2.0) * 0.9;
    assert_eq!(s.kv_capacity_tokens, (room / (2.0 * 131_072.0)).floor() as u64);
    // An H100 server's NVLink joins 8 GPUs: tensor parallelism over 16 would cross the
    // network, which the model does not cost, so it is refused.
    let e = spec_from_text(&tp16.replace("gb200", "h100-sxm"), "t.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("gpus-per-server") && e.contains("joins at most 8 GPUs by NVLink"), "{e}");
    // Tensor parallelism splits the 32 attention heads evenly: 1,024 or 6 GPUs cannot.
    for gps in [1024, 6] {
        let m = format!(
            "{}\nprompt-tokens = 100\noutput-tokens = 10",
            EIGHT_B.replace("gpus-per-server = 1", &format!("gpus-per-server = {gps}"))
        );
        let text = scenario(&m, "concurrency = 1", "1ns").replace("gpus = 1", &format!("gpus = {gps}"));
        let e = spec_from_text(&text, "tp.toml", &Catalog::builtin()).unwrap_err().to_string();
        assert!(
            e.contains("tp.toml:")
                && e.contains("gpus-per-server")
                && e.contains("splits llm \"llama-3.1-8b\"'s 32 attention heads evenly")
                && e.contains(&format!("got {gps}")),
            "{e}"
        );
    }
}

/// The step time of the shape: overhead + matrix roofline + attention roofline, rounded up to
/// the ns. The matrix work's FLOPs (at the measured matmul rate x efficiency) and weight reads
/// (at bandwidth x efficiency) combine at the catalog's roofline knee p = 2, sqrt(c^2 + m^2);
/// attention's are a max.
fn step(tokens: f64, ctx: f64, chunk: Option<(f64, f64)>) -> u64 {
    let (flops, bw) = (794.5e12 * 0.5, 3.35e12 * 0.8);
    let (c, m) = (2.0 * 8.03e9 * tokens / flops, 8.03e9 * 2.0 / bw);
    // sqrt(c^2 + m^2), as `roofline` computes it (its own closed form is tested below).
    let gemm = meshway_infer::spec::roofline(c, m, Some(2.0));
    let (mut af, mut kv) = (4.0 * 32.0 * 4096.0 * ctx, ctx);
    if let Some((c, p)) = chunk {
        af += 4.0 * 32.0 * 4096.0 * (c * p + c * c / 2.0);
        kv += p + c;
    }
    let attn = (af / flops).max(kv * 131_072.0 / bw);
    1_000_000 + ((gemm + attn) * 1e9).ceil() as u64
}

/// A lone request: TTFT = request overhead + one prefill step of the whole prompt; then one
/// decode step per further token over a context growing by one, TPOT their mean.
#[test]
fn lone_request_closed_form() {
    let text = scenario(&format!("{EIGHT_B}\nprompt-tokens = 1000\noutput-tokens = 11"), "concurrency = 1", "1ns");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let rep = simulate(&spec, &Run::new(&spec));
    let r = &rep.regions[0];
    assert_eq!(r.requests, 1);
    let prefill = step(1000.0, 0.0, Some((1000.0, 0.0)));
    assert_eq!(r.ttft.p50_ns, 5_000_000 + prefill);
    // Decode step i (1..=10) attends over 1000 prompt + i tokens.
    let decode: u64 = (1..=10).map(|i| step(1.0, 1000.0 + f64::from(i), None)).sum();
    assert_eq!(r.e2e.p50_ns, 5_000_000 + prefill + decode);
    assert_eq!(r.tpot.p50_ns, decode / 10);
    // The same through the public step function.
    assert_eq!(spec.models[0].prefill_ns(1000), 5_000_000 + prefill);
    // Decode is memory-bound at batch 1: about the weights over the bandwidth, 6.0 ms, + 1 ms.
    assert!((6_900_000..7_300_000).contains(&(decode / 10)), "{}", decode / 10);
}

/// Decode slows as the batch's context grows (memory-bound attention) and as the batch grows.
#[test]
fn decode_time_grows_with_context_and_batch() {
    let spec = spec_from_text(
        &scenario(&format!("{EIGHT_B}\nprompt-tokens = 1000\noutput-tokens = 11"), "concurrency = 1", "1ns"),
        "t.toml",
        &Catalog::builtin(),
    )
    .unwrap();
    let m = &spec.models[0];
    let mut last = f64::INFINITY;
    for ctx in [100.0, 1000.0, 10_000.0, 100_000.0] {
        let r = m.stream_rate(16, ctx);
        assert!(r < last, "stream rate {r} at context {ctx} not below {last}");
        last = r;
    }
    // A batch of 32 streams shares each step: per-stream rate falls, server rate rises.
    let (one, many) = (m.stream_rate(1, 2000.0), m.stream_rate(32, 2000.0));
    assert!(many < one && many * 32.0 > one * 8.0, "{one} {many}");
}

/// Admission by free KV cache: a server whose cache holds three mean requests never holds
/// more, and runs fewer at once than one with a large cache.
#[test]
fn kv_cache_limits_the_batch() {
    // A reserve of 67 GB leaves (85.52 - 67 - 16.06) x 0.9 = 2.21 GB: 16,897 tokens, three
    // requests of 4,000 + 500.
    let small = EIGHT_B.replace("memory-reserve = \"2GB\"", "memory-reserve = \"67GB\"");
    let run = |m: &str| {
        let text = scenario(&format!("{m}\nprompt-tokens = 4000\noutput-tokens = 500"), "concurrency = 32", "60s");
        let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
        let cap = spec.models[0].kv_capacity_tokens;
        (cap, simulate(&spec, &Run::new(&spec)))
    };
    let (cap, r) = run(&small);
    assert_eq!(cap / 4500, 3, "capacity {cap}");
    let s = &r.sites[0];
    assert!(s.kv_fill <= 1.0 && s.kv_fill > 0.5, "kv fill {}", s.kv_fill);
    assert!(s.batch_fill * 64.0 <= 3.0 + 1e-9, "mean batch {}", s.batch_fill * 64.0);
    let (_, big) = run(EIGHT_B);
    assert!(big.sites[0].batch_fill * 64.0 > 20.0, "mean batch {}", big.sites[0].batch_fill * 64.0);
    let (b, s) = (big.regions[0].tokens_per_s, r.regions[0].tokens_per_s);
    assert!(b > 2.0 * s, "{b} vs {s} tokens/s");
}

/// Chunked prefill keeps decoding going while prompts arrive: inter-token latency at the
/// tail is lower than when each prompt pauses every decode.
#[test]
fn chunked_prefill_smooths_inter_token_latency() {
    let run = |chunked: bool| {
        let m = EIGHT_B.replace("token-budget = 8192", "token-budget = 512");
        let m = format!("{m}\nchunked-prefill = {chunked}\nprompt-tokens = 2000\noutput-tokens = 200");
        let text = scenario(&m, "rate = 6", "2min");
        let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
        simulate(&spec, &Run::new(&spec))
    };
    let (c, n) = (run(true), run(false));
    let (c, n) = (&c.regions[0], &n.regions[0]);
    assert!(c.tpot.p99_ns < n.tpot.p99_ns, "chunked p99 TPOT {} vs {}", c.tpot.p99_ns, n.tpot.p99_ns);
    // Without chunking the first token comes sooner (a prompt is prefilled in one step).
    assert!(c.ttft.p50_ns > n.ttft.p50_ns, "chunked p50 TTFT {} vs {}", c.ttft.p50_ns, n.ttft.p50_ns);
}

/// Speculative decoding: k = 4 drafts accepted with probability 0.8 yield
/// (1 - 0.8^5) / 0.2 = 3.3616 tokens per step, so 10 further tokens take 3 steps.
#[test]
fn speculative_decoding_tokens_per_step() {
    let m = format!("{EIGHT_B}\nspeculative-draft-tokens = 4\nspeculative-acceptance = 0.8\nprompt-tokens = 1000\noutput-tokens = 11");
    let spec = spec_from_text(&scenario(&m, "concurrency = 1", "1ns"), "t.toml", &Catalog::builtin()).unwrap();
    assert!((spec.models[0].tokens_per_step - 3.3616).abs() < 1e-9);
    assert_eq!(spec.models[0].verify_tokens, 5);
    let r = simulate(&spec, &Run::new(&spec));
    let plain = spec_from_text(
        &scenario(&format!("{EIGHT_B}\nprompt-tokens = 1000\noutput-tokens = 11"), "concurrency = 1", "1ns"),
        "t.toml",
        &Catalog::builtin(),
    )
    .unwrap();
    let p = simulate(&plain, &Run::new(&plain));
    let (spec_decode, plain_decode) =
        (r.regions[0].e2e.p50_ns - r.regions[0].ttft.p50_ns, p.regions[0].e2e.p50_ns - p.regions[0].ttft.p50_ns);
    // 3 steps of ~7 ms against 10.
    assert!(
        spec_decode * 3 < plain_decode * 11 / 10 && spec_decode * 3 > plain_decode * 8 / 10,
        "{spec_decode} vs {plain_decode}"
    );
}

/// A prefix cache skips the cached share of each prompt's prefill.
#[test]
fn prefix_cache_skips_prefill() {
    let run = |hit: f64| {
        let m = format!("{EIGHT_B}\nprefix-cache-hit = {hit}\nprompt-tokens = 4000\noutput-tokens = 2");
        let spec = spec_from_text(&scenario(&m, "concurrency = 1", "1ns"), "t.toml", &Catalog::builtin()).unwrap();
        simulate(&spec, &Run::new(&spec)).regions[0].ttft.p50_ns
    };
    let (cold, warm) = (run(0.0), run(0.75));
    // 1,000 of 4,000 tokens prefilled, attending over the 3,000 cached ones.
    assert_eq!(warm, 5_000_000 + step(1000.0, 0.0, Some((1000.0, 3000.0))));
    assert!(warm * 2 < cold, "{warm} vs {cold}");
}

/// A mixture of experts reads its active share of the weights for one token and nearly all
/// of them for a large batch; FLOPs follow the active parameters.
#[test]
fn mixture_of_experts_weight_reads() {
    let m = "llm = \"mixtral-8x7b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 1\nprecision = \"fp8\"\nprompt-tokens = 100\noutput-tokens = 10";
    let s = shape(&scenario(m, "concurrency = 1", "1ns"));
    assert!((s.weight_read(1.0) - 12.9e9).abs() < 1.0);
    assert!(s.weight_read(4096.0) > 0.999 * 46.7e9);
    assert_eq!(s.active_params, 12.9e9);
}

/// TPOT objectives: a region whose p99 TPOT is above its objective misses, and attainment
/// counts both objectives.
#[test]
fn tpot_objective() {
    let m = format!("{EIGHT_B}\nprompt-tokens = 500\noutput-tokens = 50");
    let run = |obj: &str| {
        let text = scenario(&m, &format!("rate = 2\ntpot-p99 = \"{obj}\""), "1min");
        let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
        simulate(&spec, &Run::new(&spec))
    };
    let (tight, loose) = (run("1ms"), run("100ms"));
    assert!(!tight.regions[0].met && tight.regions[0].attainment == 0.0);
    assert!(loose.regions[0].met && loose.regions[0].attainment == 1.0);
    assert_eq!(loose.regions[0].tpot_p99_objective_ns, Some(100_000_000));
}

/// Empirical lengths: every request draws a row of the CSV (counts weight the rows).
#[test]
fn lengths_from_csv() {
    let dir = std::env::temp_dir().join(format!("meshway-lengths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Quoted as spreadsheets and pandas write it.
    std::fs::write(dir.join("len.csv"), "\"prompt\",\"output\",\"count\"\n100,3,3\n\"700\",9,1\n").unwrap();
    let text = scenario(&format!("{EIGHT_B}\nlengths = \"len.csv\""), "concurrency = 1", "20s");
    let file = dir.join("s.toml");
    let spec = spec_from_text(&text, file.to_str().unwrap(), &Catalog::builtin());
    std::fs::remove_dir_all(&dir).unwrap();
    let spec = spec.unwrap();
    let m = &spec.models[0];
    assert_eq!((m.prompt_tokens, m.output_tokens), (250, 5)); // (3 x 100 + 700) / 4, (9 + 9) / 4 rounded
    assert_eq!(m.prompt_p99(), 700);
    let r = simulate(&spec, &Run::new(&spec));
    let reg = &r.regions[0];
    // Each request has 3 or 9 output tokens: the total is a sum of those.
    // Tokens per second of the whole run, drain included.
    let tokens = (reg.tokens_per_s * r.end_ns.max(r.duration_ns) as f64 * 1e-9).round() as u64;
    let n = reg.requests;
    assert!(tokens >= 3 * n && tokens <= 9 * n && (tokens - 3 * n).is_multiple_of(6), "{tokens} tokens, {n} requests");
}

/// A lengths CSV with a count past the limit, an unknown or repeated column, no rows or only
/// zero counts is refused, naming the file; a byte-order mark and indented comments are fine.
#[test]
fn bad_lengths_csv() {
    let dir = std::env::temp_dir().join(format!("meshway-badlengths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    let text = scenario(&format!("{EIGHT_B}\nlengths = \"len.csv\""), "concurrency = 1", "1s");
    let load = |csv: &str| {
        std::fs::write(dir.join("len.csv"), csv).unwrap();
        spec_from_text(&text, file.to_str().unwrap(), &Catalog::builtin()).map(|s| s.models[0].prompt_tokens)
    };
    let huge = load("prompt,output,count\n500,100,1\n500,100,18446744073709551615\n");
    let typo = load("prompt,output,counts\n500,100,3\n");
    let twice = load("prompt,prompt,output\n500,500,100\n");
    let many = load("prompt,output,count\n500,100,9000000\n500,100,2000000\n");
    let bom = load("\u{feff}prompt,output\n  # a comment\n500,100\n");
    let extra = load("prompt,output\n500,100\n500,100,7\n");
    let short = load("prompt,output,count\n500,100\n");
    let zeros = load("prompt,output,count\n500,100,0\n900,10,0\n");
    let header_only = load("prompt,output\n# nothing\n");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = zeros.unwrap_err().to_string();
    assert!(e.contains("len.csv counts 0 samples in its 2 rows"), "{e}");
    let e = header_only.unwrap_err().to_string();
    assert!(e.contains("len.csv has no rows: expected at least one"), "{e}");
    let e = extra.unwrap_err().to_string();
    assert!(e.contains("len.csv:3: expected 2 fields (prompt,output)") && e.contains("got 3"), "{e}");
    let e = short.unwrap_err().to_string();
    assert!(e.contains("len.csv:2: expected 3 fields") && e.contains("got 2"), "{e}");
    let e = huge.unwrap_err().to_string();
    assert!(e.contains("len.csv:3") && e.contains("count") && e.contains("0 to 10000000"), "{e}");
    let e = typo.unwrap_err().to_string();
    assert!(e.contains("unknown column \"counts\""), "{e}");
    let e = twice.unwrap_err().to_string();
    assert!(e.contains("a second column \"prompt\""), "{e}");
    let e = many.unwrap_err().to_string();
    assert!(e.contains("more than 10000000 samples"), "{e}");
    assert_eq!(bom.unwrap(), 500);
}

/// Drawn lengths past the model's context (131,072 tokens for Llama 3.1 8B) are refused, as
/// engines refuse them: counted as too long, neither served nor unserved, and not held
/// against the objective, since more GPUs cannot serve them. With exponential prompts of
/// mean 60,000, P(prompt > 131,072 - output) is about exp(-131,072 / 60,000) = 11%.
#[test]
fn requests_past_the_context_are_refused_as_too_long() {
    let m = format!("{EIGHT_B}\nprompt-tokens = 60000\noutput-tokens = 20\nlength-dist = \"exponential\"");
    let text = scenario(&m, "rate = 100\nrequests = 400", "10s").replace("ttft-p99 = \"10s\"", "ttft-p99 = \"10000s\"");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    assert_eq!(spec.models[0].context, Some(131_072));
    let r = simulate(&spec, &Run::new(&spec));
    let reg = &r.regions[0];
    assert_eq!(reg.requests, 400);
    assert_eq!(reg.unserved, 0);
    let share = reg.too_long as f64 / reg.requests as f64;
    assert!((0.07..0.16).contains(&share), "{} of {} too long", reg.too_long, reg.requests);
    // Every request is served or too long.
    assert_eq!(reg.served + reg.too_long, reg.requests);
    assert!(reg.met, "{reg:?}");
    // A context of its own is the model's, and a fixed length past it is refused up front.
    let fixed = scenario(&format!("{EIGHT_B}\nprompt-tokens = 131000\noutput-tokens = 100"), "concurrency = 1", "1s");
    let e = spec_from_text(&fixed, "t.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("a request of 131100 tokens") && e.contains("context of 131072"), "{e}");
}

/// A closed loop keeps exactly `concurrency` requests in flight and sends again at once.
#[test]
fn closed_loop_concurrency() {
    let m = format!("{EIGHT_B}\nprompt-tokens = 200\noutput-tokens = 20");
    let text = scenario(&m, "concurrency = 4", "10s");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let r = simulate(&spec, &Run::new(&spec));
    let s = &r.sites[0];
    // Four requests at once whenever the server runs (the gaps are the request overhead).
    assert!(s.batch_fill * 64.0 <= 4.0 + 1e-9 && s.batch_fill * 64.0 > 3.0, "mean batch {}", s.batch_fill * 64.0);
    assert!(r.regions[0].requests > 40, "{} requests", r.regions[0].requests);
}

/// `requests = N` with a rate sends exactly N requests, at Poisson times over N / rate (a
/// Poisson process given its count); a duration shorter than that, and a count where it has
/// no meaning, are refused.
#[test]
fn request_count_sends_exactly_that_many() {
    let m = format!("{EIGHT_B}\nprompt-tokens = 200\noutput-tokens = 20");
    let run = |region: &str, duration: &str| {
        let spec = spec_from_text(&scenario(&m, region, duration), "t.toml", &Catalog::builtin()).unwrap();
        simulate(&spec, &Run::new(&spec))
    };
    let r = run("rate = 20\nrequests = 100", "60s");
    assert_eq!((r.regions[0].requests, r.regions[0].unserved), (100, 0));
    // The last of 100 arrivals lands before 100 / 20 = 5 s, and all are served soon after.
    assert!(r.end_ns > 4_000_000_000 && r.end_ns < 5_500_000_000, "ended at {} ns", r.end_ns);
    // At half the rate the same draw spreads over twice the span.
    let slow = run("rate = 10\nrequests = 100", "60s");
    assert_eq!(slow.regions[0].requests, 100);
    assert!(slow.end_ns > 8_000_000_000 && slow.end_ns < 10_500_000_000, "ended at {} ns", slow.end_ns);
    // A duration shorter than N / rate is refused: it cut the arrivals off at a seed's luck
    // (56 or 47 of 100), neither N nor rate x duration.
    let spec = spec_from_text(&scenario(&m, "rate = 20\nrequests = 100", "2s"), "t.toml", &Catalog::builtin()).unwrap();
    let e = spec.check_run_size(spec.duration.0).unwrap_err();
    assert!(e.contains("requests = 100 at 20 per second over 5 s, longer than the run's 2 s"), "{e}");
    // A 1 ns run reads as such, not "0 s".
    assert!(spec.check_run_size(1).unwrap_err().contains("longer than the run's 0.000000001 s"));
    assert!(spec.check_run_size(5_000_000_000).is_ok());
    let bad = |region: &str| {
        spec_from_text(&scenario(&m, region, "1s"), "bad.toml", &Catalog::builtin()).unwrap_err().to_string()
    };
    let e = bad("concurrency = 4\nrequests = 10");
    assert!(e.contains("bad.toml") && e.contains("requests") && e.contains("closed loop"), "{e}");
    let e = bad("rate = 5\nrequests = 0");
    assert!(e.contains("requests") && e.contains("expected 1 to 1000000000"), "{e}");
    let e = bad("rate = 0\nrequests = 10");
    assert!(e.contains("positive `rate`"), "{e}");
    let e =
        bad("rate = 5\nrequests = 10\narrivals = \"bursty\"\nburst-factor = 2\nburst-on = \"1s\"\nburst-off = \"1s\"");
    assert!(e.contains("Poisson `arrivals` and no `profile`"), "{e}");
    let poisson = run("rate = 20\nrequests = 100\narrivals = \"poisson\"", "60s");
    assert_eq!(poisson.regions[0].requests, 100);
}

fn err(model: &str) -> String {
    let text = scenario(&format!("gpus-per-server = 1\n{model}"), "concurrency = 1", "1ns");
    spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string()
}

#[test]
fn bad_serving_input() {
    let lens = "prompt-tokens = 100\noutput-tokens = 10";
    let e = err(&format!("llm = \"llama-3.1-405b\"\ngpu = \"h100-sxm\"\nprecision = \"bf16\"\n{lens}"));
    // Weights past the server's memory say by how much (it read "leaves 0.0 GB, no room for a
    // KV cache of 1024 tokens").
    assert!(
        e.contains("bad.toml:")
            && e.contains("needs 811.8 GB of weights, more than the 81.5 GB 1 x h100-sxm hold")
            && !e.contains("no room for a KV cache"),
        "{e}"
    );
    // One GPU of eight: more GPUs per server, up to the NVLink domain. All eight: more GPUs
    // cannot help (TP 16 is refused on H100), so the advice changes.
    assert!(e.contains("use more GPUs per server (up to 8, h100-sxm's NVLink domain)"), "{e}");
    let text = scenario(
        &format!("gpus-per-server = 8\nllm = \"llama-3.1-405b\"\ngpu = \"h100-sxm\"\nprecision = \"bf16\"\n{lens}"),
        "concurrency = 1",
        "1ns",
    )
    .replace("gpus = 1", "gpus = 8");
    let e = spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("use a smaller precision, or a GPU with more memory or a larger NVLink domain"), "{e}");
    // Weights that fit with no room for 1,024 tokens of cache keep that message.
    let e = err(&format!(
        "llm = \"llama-3.1-70b\"\ngpu = \"h100-sxm\"\nprecision = \"fp8\"\nmemory-reserve = \"14.8GB\"\n{lens}"
    ));
    assert!(e.contains("no room for a KV cache of 1024 tokens"), "{e}");
    // A reserve past the GPU's memory is the reserve's fault.
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nmemory-reserve = \"100GB\"\n{lens}"));
    assert!(e.contains("memory-reserve") && e.contains("expected less than the GPU's memory"), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxn\"\n{lens}"));
    assert!(e.contains("unknown gpu \"h100-sxn\"") && e.contains("did you mean \"h100-sxm\"?"), "{e}");
    let e = err(&format!("llm = \"llama-3-8b\"\ngpu = \"h100-sxm\"\n{lens}"));
    assert!(e.contains("unknown llm \"llama-3-8b\""), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"a100-sxm\"\nprecision = \"fp8\"\n{lens}"));
    assert!(e.contains("has no FP8"), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\n{lens}"));
    assert!(e.contains("needs both `llm` and `gpu`"), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nprefill-tokens-per-s = 1000\n{lens}"));
    assert!(e.contains("not both"), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nspeculative-draft-tokens = 4\n{lens}"));
    assert!(e.contains("needs `speculative-acceptance`"), "{e}");
    let e = err(&format!("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nprefix-cache-hit = 1.0\n{lens}"));
    assert!(e.contains("prefix-cache-hit") && e.contains("[0, 1)"), "{e}");
    let e = err("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nlengths = \"/no/such/file.csv\"");
    assert!(e.contains("cannot read /no/such/file.csv"), "{e}");
    let e = err("llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nmemory-utilization = 0.1\nprompt-tokens = 120000\noutput-tokens = 10");
    assert!(e.contains("does not fit the server's KV cache"), "{e}");
    let text = scenario(&format!("{EIGHT_B}\n{lens}"), "concurrency = 2\nrate = 3", "1s");
    let e = spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
}

/// Disaggregated serving: prefill at P, the KV cache over a DCI link to D, decode at D.
fn disaggregated(extra_dci: &str) -> String {
    format!(
        "[inference]\nduration = \"10min\"\npolicy = \"nearest\"\n\
         [[model]]\nname = \"m\"\n{EIGHT_B}\nprompt-tokens = 1000\noutput-tokens = 11\n\n\
         [[site]]\nname = \"P\"\nrole = \"prefill\"\ngpus = 1\naccess-hops = 0\n\n\
         [[site]]\nname = \"D\"\nrole = \"decode\"\ngpus = 1\naccess-hops = 0\n\n\
         [[dci]]\na = \"P\"\nb = \"D\"\ndistance = \"1000km\"\n{extra_dci}\n\n\
         [[region]]\nname = \"r\"\nrate = 0.01\nlast-mile = \"0ms\"\nttft-p99 = \"10s\"\n\
         fiber = {{ P = \"0km\", D = \"0km\" }}\nwan-fixed = {{ P = \"0ns\", D = \"0ns\" }}\n"
    )
}

/// Each request's KV cache (1,000 tokens x 131,072 B) crosses the link at the capacity left by
/// background traffic (100 Gb/s x 0.5), plus 1,000 km x 4.9 us; the first token still comes
/// from the prefill site.
#[test]
fn disaggregated_transfer_closed_form() {
    let text = disaggregated("capacity = \"100Gbps\"\nbackground = 0.5");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let rep = simulate(&spec, &Run::new(&spec));
    let r = &rep.regions[0];
    assert!(r.requests >= 3, "{} requests", r.requests);
    assert_eq!(r.unserved, 0);
    assert_eq!(r.main_site.as_deref(), Some("D"));
    let bytes: f64 = 1000.0 * 131_072.0;
    let transfer = (bytes / (100e9 * 0.5 / 8.0) * 1e9).ceil() as u64 + 4_900_000;
    assert_eq!(rep.dci.len(), 1);
    let d = &rep.dci[0];
    assert_eq!((d.from.as_str(), d.to.as_str()), ("P", "D"));
    assert_eq!(d.transfers, r.requests);
    assert!((d.bytes - bytes * r.requests as f64).abs() < 1.0);
    assert!(
        d.transfer.p50_ns.abs_diff(transfer) <= 1 && d.transfer.max_ns.abs_diff(transfer) <= 1,
        "{:?} vs {transfer}",
        d.transfer
    );
    // TTFT: request overhead + the prefill step at P, as in one site.
    assert_eq!(r.ttft.p50_ns, 5_000_000 + step(1000.0, 0.0, Some((1000.0, 0.0))));
    // After the first token: the transfer, then ten decode steps at D.
    let decode: u64 = (1..=10).map(|i| step(1.0, 1000.0 + f64::from(i), None)).sum();
    assert_eq!(r.e2e.p50_ns - r.ttft.p50_ns, transfer + decode);
    // Each site counts the requests it worked on.
    assert_eq!(rep.sites[0].requests, r.requests);
    assert_eq!(rep.sites[1].requests, r.requests);
    // The round trip shown is the prefill site's, which the TTFT pays: with the decode site
    // 2,000 km further from the user it stays the same (it was the decode site's).
    let far = text.replace("D = \"0km\" }", "D = \"2000km\" }");
    let spec = spec_from_text(&far, "t.toml", &Catalog::builtin()).unwrap();
    let f = &simulate(&spec, &Run::new(&spec)).regions[0];
    assert_eq!((f.prefill_site.as_deref(), f.main_site.as_deref()), (Some("P"), Some("D")));
    assert_eq!(f.rtt_ns, r.rtt_ns);
    assert_eq!(f.ttft.p50_ns, r.ttft.p50_ns);
    assert_eq!(spec.regions[0].paths[0].as_ref().map(|p| 2 * p.one_way.0), f.rtt_ns);
}

/// A prefix cache saves prefill, but the decode site holds the whole prompt's KV cache: a
/// request whose uncached part fits the prefill site and whose whole prompt does not fit an
/// empty decode server is refused as too long, not left queued at the decode site (where
/// it blocked every request behind it, and the run ended with them uncounted).
#[test]
fn a_split_request_the_decode_site_cannot_hold_is_too_long() {
    let run = |prompt: u64| {
        let text = disaggregated("capacity = \"400Gbps\"")
            .replace("prompt-tokens = 1000", &format!("prompt-tokens = {prompt}\nprefix-cache-hit = 0.5"))
            .replace("rate = 0.01", "rate = 0.2")
            .replace("memory-utilization = 0.9", "memory-utilization = 0.25");
        let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
        (spec.models[0].kv_capacity_tokens, simulate(&spec, &Run::new(&spec)))
    };
    let (cap, _) = run(1000);
    assert!(cap < 131_000, "{cap} tokens: within the model's context");
    // Half the prompt plus the 11 output tokens fit; the whole prompt does not.
    let (_, rep) = run(cap - 5);
    let r = &rep.regions[0];
    assert!(r.requests >= 50, "{} requests", r.requests);
    assert_eq!((r.too_long, r.served, r.unserved), (r.requests, 0, 0));
    assert_eq!(rep.unfinished, 0);
    // Five tokens less and they are served.
    let (_, rep) = run(cap - 11);
    let r = &rep.regions[0];
    assert_eq!((r.too_long, r.unserved, r.served), (0, 0, r.requests));
}

/// Transfers share the link: a thinner link stretches them and the time per output token.
#[test]
fn disaggregated_link_contention() {
    let run = |cap: &str, rate: f64| {
        let text = disaggregated(&format!("capacity = \"{cap}\"")).replace("rate = 0.01", &format!("rate = {rate}"));
        let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
        simulate(&spec, &Run::new(&spec))
    };
    let (wide, thin) = (run("400Gbps", 4.0), run("10Gbps", 4.0));
    assert!(
        thin.dci[0].transfer.p99_ns > 10 * wide.dci[0].transfer.p99_ns / 2,
        "{:?} {:?}",
        thin.dci[0].transfer,
        wide.dci[0].transfer
    );
    assert!(thin.regions[0].tpot.p50_ns > wide.regions[0].tpot.p50_ns);
    assert!(thin.dci[0].utilization > wide.dci[0].utilization * 20.0);
    // 4 requests/s x 131 MB = 4.2 Gb/s on 10 Gb/s: about 42% busy.
    assert!((0.3..0.6).contains(&thin.dci[0].utilization), "{}", thin.dci[0].utilization);
}

/// A prefill site that fails stops sending its KV caches: the link goes quiet at the
/// failure and its users resend after the failover delay. (The transfers used to run on,
/// keeping the link busy and holding the requests until they ended.)
#[test]
fn kv_transfers_stop_with_their_prefill_site() {
    // 1,000 tokens x 131,072 B at 1 Gb/s: 1.05 s a transfer, two a second: a backlog of
    // about a minute by the failure.
    let text = disaggregated("capacity = \"1Gbps\"").replace("rate = 0.01", "rate = 2");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let mut run = Run::new(&spec);
    let fail_at = 60_000_000_000;
    run.site_fail_at[0] = Some(fail_at);
    let rep = simulate(&spec, &run);
    let d = &rep.dci[0];
    let busy_ns = d.busy * rep.end_ns.max(rep.duration_ns) as f64;
    assert!(busy_ns <= fail_at as f64 + 1e6, "busy {:.1}s past the failure at 60s", busy_ns * 1e-9);
    let r = &rep.regions[0];
    assert!(r.unserved > 0, "{} unserved", r.unserved);
    // Every request is accounted for: served or unserved (none is left on the dead link).
    assert_eq!(r.served + r.unserved, r.requests);
}

#[test]
fn bad_disaggregation() {
    let bad = |text: &str| spec_from_text(text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    let no_link = disaggregated("capacity = \"100Gbps\"")
        .replace("[[dci]]\na = \"P\"\nb = \"D\"\ndistance = \"1000km\"\ncapacity = \"100Gbps\"\n", "");
    assert!(bad(&no_link).contains("has no [[dci]] link to a decode site"), "{}", bad(&no_link));
    let e = bad(&disaggregated("capacity = \"100Gbps\"\nbackground = 1.5"));
    assert!(e.contains("`dci[1].background`") && e.contains("[0, 1)"), "{e}");
    let e = bad(&disaggregated("capacity = \"100Gbps\"").replace("b = \"D\"", "b = \"E\""));
    assert!(e.contains("unknown site \"E\""), "{e}");
    let rated = disaggregated("capacity = \"100Gbps\"")
        .replace(EIGHT_B, "gpus-per-server = 1\nprefill-tokens-per-s = 1000\ndecode-tokens-per-s = 100\nmax-batch = 4");
    let e = bad(&rated);
    assert!(e.contains("needs a shape"), "{e}");
    let only_decode = disaggregated("capacity = \"100Gbps\"")
        .replace("fiber = { P = \"0km\", D = \"0km\" }", "fiber = { D = \"0km\" }");
    let e = bad(&only_decode);
    assert!(e.contains("reaches only decode sites"), "{e}");
    // A decode site no prefill site feeds sat idle and was billed.
    let orphan = disaggregated("capacity = \"100Gbps\"")
        .replace("[[region]]", "[[site]]\nname = \"E\"\nrole = \"decode\"\ngpus = 1\n\n[[region]]");
    assert_eq!(
        bad(&orphan),
        "bad.toml:41: `site[3].role`: decode site \"E\" has no [[dci]] link to a prefill site serving its model"
    );
    // A routed link's rate, or an optic's wavelengths: not both (one was ignored).
    for both in ["optic = \"400zr\"", "wavelengths = 4"] {
        let e = bad(&disaggregated(&format!("capacity = \"100Gbps\"\n{both}")));
        assert!(
            e.contains("give either `capacity` (a routed path's rate) or `optic` and `wavelengths`, not both"),
            "{e}"
        );
    }
    // A named optic must reach its span (400ZR at 1,000 km was taken at 400 Gb/s), and no
    // link is longer than any path on Earth (10^12 km was taken).
    let e = bad(&disaggregated("optic = \"400zr\"\nwavelengths = 1"));
    assert!(e.contains("`dci[1].distance`: 1000km exceeds the 400g-zr reach of 120km; choose an optic that reaches it, such as 400g-zr-plus"), "{e}");
    let e = bad(
        &disaggregated("capacity = \"100Gbps\"").replace("distance = \"1000km\"", "distance = \"1000000000000km\"")
    );
    assert!(e.contains("`dci[1].distance`: expected at most 50000km"), "{e}");
    // With neither a rate nor an optic, one wavelength of the cheapest optic that reaches.
    let spec = spec_from_text(&disaggregated(""), "t.toml", &Catalog::builtin()).unwrap();
    assert_eq!(spec.dcis[0].capacity_bps, 400e9);
    // A second link between the same pair was accepted and never used.
    let twice = disaggregated(
        "capacity = \"100Gbps\"\n[[dci]]\na = \"D\"\nb = \"P\"\ndistance = \"10km\"\ncapacity = \"1Mbps\"",
    );
    let e = bad(&twice);
    assert!(e.contains("`dci[2].b`: D and P are already joined by dci[1]"), "{e}");
    // Shares below 0.001 made a step overflow 64 bits and wrap to a fast one; prices past
    // $1M an hour made the cost infinite.
    let e = bad(&disaggregated("capacity = \"100Gbps\"").replace("flops-efficiency = 0.5", "flops-efficiency = 1e-16"));
    assert!(e.contains("`model[1].flops-efficiency`: expected a share from 0.001 to 1, got 1e-16"), "{e}");
    let e = bad(&disaggregated("capacity = \"100Gbps\"")
        .replace("role = \"decode\"", "role = \"decode\"\ngpu-hour-usd = 1e308"));
    assert!(
        e.contains("`site[2].gpu-hour-usd`: expected a price from 0 to 1000000 (dollars per GPU-hour), got 1e308"),
        "{e}"
    );
}

/// Placement sizes a prefill site for the prompts it prefills alone and its decode site for
/// the requests it decodes; a DCI link that cannot carry the KV caches is a violation.
#[test]
fn placement_sizes_prefill_and_decode_sites() {
    let text = disaggregated("capacity = \"400Gbps\"")
        .replace("rate = 0.01", "rate = 40\ntpot-p99 = \"8ms\"")
        .replace("gpus = 1\n", "gpus = 1\nmax-gpus = 64\n");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let m = &spec.models[0];
    // A prefill-only server: one 1,000-token step after another.
    assert_eq!(m.prefill_capacity(), 1e9 / step(1000.0, 0.0, Some((1000.0, 0.0))) as f64);
    let (pre, dec) = (m.prefill_capacity(), m.decode_capacity_within(Some(8_000_000)));
    assert!(dec < m.decode_capacity_within(None), "a TPOT objective cuts the batch");
    let sz = meshway_infer::place::size(&spec, &[true, true], false, &meshway_infer::place::prefill_estimates(&spec));
    assert!(sz.violations.is_empty(), "{:?}", sz.violations);
    let want = |cap: f64| (40.0 / (0.8 * cap) - 1e-9).ceil() as u32;
    assert_eq!(sz.servers, vec![want(pre), want(dec)]);
    assert_eq!(sz.assignment, vec![Some(0)]);
    // 40 requests/s x 131 MB = 42 Gb/s of KV caches on a 40 Gb/s link.
    let thin = spec_from_text(&text.replace("400Gbps", "40Gbps"), "t.toml", &Catalog::builtin()).unwrap();
    let sz = meshway_infer::place::size(&thin, &[true, true], false, &meshway_infer::place::prefill_estimates(&thin));
    assert!(
        sz.violations.iter().any(|v| v.contains("dci P - D carries 41.9 Gb/s of KV caches")),
        "{:?}",
        sz.violations
    );
    // Without the decode site the prefill site cannot serve.
    let sz = meshway_infer::place::size(&spec, &[true, false], false, &meshway_infer::place::prefill_estimates(&spec));
    assert!(sz.violations.iter().any(|v| v.contains("r: no open site")), "{:?}", sz.violations);
}

/// A mixture of experts pays `moe-efficiency` on its FLOPs only: at one token a step is
/// bound by reading the active experts' weights and is the same at any efficiency; at a
/// large prefill it is FLOP-bound and slows by the efficiency.
#[test]
fn mixture_of_experts_efficiency_applies_to_flops() {
    let m = "llm = \"mixtral-8x7b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 1\nprecision = \"fp8\"\nprompt-tokens = 100\noutput-tokens = 10";
    let mut s = shape(&scenario(m, "concurrency = 1", "1ns"));
    s.step_overhead_ns = 0;
    // The sharp roofline, so one token's step is the weight read alone.
    s.knee = None;
    let (flops, bw) = (1402.6e12 * 0.8, 3.35e12 * 0.75);
    assert!((s.flops - flops).abs() < 1.0 && (s.bytes_per_s - bw).abs() < 1.0);
    let full = |s: &Shape, tokens: u32| s.step_ns(0, 0.0, 1, &[(tokens, 0)]);
    // One token: 12.9 GB of active weights over the bandwidth, plus one token's KV write.
    let attn1 = (4.0 * 32.0 * 4096.0 * 0.5 / flops).max(65_536.0 / bw);
    assert_eq!(full(&s, 1), ((12.9e9 / bw + attn1) * 1e9).ceil() as u64);
    let mut half = s.clone();
    half.moe_efficiency = 0.5;
    assert_eq!(full(&half, 1), full(&s, 1));
    // 8,192 tokens: 2 x 12.9e9 x 8192 FLOPs at the rate x efficiency.
    let c = 8192.0;
    let attn = (4.0 * 32.0 * 4096.0 * (c * c / 2.0) / flops).max(c * 65_536.0 / bw);
    let gemm = |e: f64| (2.0 * 12.9e9 * c / flops / e).max(s.weight_read(c) / bw);
    assert_eq!(full(&s, 8192), ((gemm(0.75) + attn) * 1e9).ceil() as u64);
    assert_eq!(full(&half, 8192), ((gemm(0.5) + attn) * 1e9).ceil() as u64);
    assert!(full(&half, 8192) > full(&s, 8192) * 13 / 10);
    // With the built-in knee the matrix work is sqrt(C^2 + M^2).
    let mut kneed = s.clone();
    kneed.knee = Some(2.0);
    let (cf, mr) = (2.0 * 12.9e9 * c / flops / 0.75, s.weight_read(c) / bw);
    let want = ((meshway_infer::spec::roofline(cf, mr, Some(2.0)) + attn) * 1e9).ceil() as u64;
    assert_eq!(full(&kneed, 8192), want);
    assert!(full(&kneed, 8192) > full(&s, 8192));
}

/// The roofline's knee: (c^p + m^p)^(1/p) for the matrix work; none is the max; p = 1 adds.
#[test]
fn roofline_knee_closed_form() {
    use meshway_infer::spec::roofline;
    assert_eq!(roofline(3.0, 4.0, None), 4.0);
    assert!((roofline(3.0, 4.0, Some(2.0)) - 5.0).abs() < 1e-12);
    assert!((roofline(3.0, 4.0, Some(1.0)) - 7.0).abs() < 1e-12);
    assert!((roofline(3.0, 4.0, Some(64.0)) - 4.0).abs() < 1e-6);
    assert_eq!(roofline(3.0, 4.0, Some(f64::INFINITY)), 4.0);
    assert_eq!(roofline(4.0, 4.0, Some(f64::INFINITY)), 4.0);
    assert_eq!(roofline(f64::INFINITY, 4.0, Some(2.0)), f64::INFINITY);
    assert_eq!(roofline(0.0, 4.0, Some(2.0)), 4.0);
    // Tiny and huge times do not under- or overflow.
    assert!((roofline(3e-300, 4e-300, Some(2.0)) / 5e-300 - 1.0).abs() < 1e-12);
    assert!((roofline(3e300, 4e300, Some(2.0)) / 5e300 - 1.0).abs() < 1e-12);
    // The built-in catalog's knee is 2: a step whose FLOPs and weight reads take as long
    // each takes sqrt(2) times either.
    let mut s =
        shape(&scenario(&format!("{EIGHT_B}\nprompt-tokens = 100\noutput-tokens = 10"), "concurrency = 1", "1ns"));
    assert_eq!(s.knee, Some(2.0));
    s.step_overhead_ns = 0;
    let tokens = (8.03e9 * 2.0 / s.bytes_per_s) * s.flops / (2.0 * 8.03e9);
    let t = s.step_ns(0, 0.0, 1, &[(tokens.round() as u32, 0)]) as f64 * 1e-9;
    let m = 8.03e9 * 2.0 / s.bytes_per_s;
    assert!((t / (m * 2f64.sqrt()) - 1.0).abs() < 0.02, "{t} vs {m}");
}

/// Tensor parallelism: two all-reduces per layer per step, each the cheaper of a one-shot
/// (one latency, every GPU reading its n-1 peers' activations) and a ring (latency x log2 n,
/// 2 (n-1)/n of the activations). Llama 3.1 70B in BF16 over 4 H100s with the built-in
/// figures: one-shot 28 us, ring 40 us x 2, NVLink 370.8 GB/s, 8,192 x 2 bytes per token.
#[test]
fn tensor_parallel_allreduce_is_the_cheaper_of_one_shot_and_ring() {
    let m = "llm = \"llama-3.1-70b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 4\nprecision = \"bf16\"\n\
             prompt-tokens = 100\noutput-tokens = 10";
    let s = shape(&scenario(m, "concurrency = 1", "1ns").replace("gpus = 1", "gpus = 4"));
    assert_eq!((s.gpus, s.allreduce_ns, s.oneshot_ns), (4, 40_000, Some(28_000)));
    assert!((s.nvlink_bytes_per_s - 370.8e9).abs() < 1.0);
    // The same step without communication: one GPU's worth of all-reduces is none.
    let mut alone = s.clone();
    alone.gpus = 1;
    let comm = |s: &Shape, tokens: u32| {
        s.step_ns(0, 0.0, 1, &[(tokens, 0)]) as f64 - alone.step_ns(0, 0.0, 1, &[(tokens, 0)]) as f64
    };
    let (b, bw) = (8192.0 * 2.0, 370.8e9);
    let once = |t: f64| 28e-6 + 3.0 * t * b / bw;
    let ring = |t: f64| 80e-6 + 1.5 * t * b / bw;
    // One-shot below the crossover (52 us x 370.8 GB/s / 1.5 = 12.9 MB, 784 tokens), the ring
    // above it; each within the two steps' rounding.
    for (tokens, want) in [(1.0, once(1.0)), (700.0, once(700.0)), (900.0, ring(900.0)), (8192.0, ring(8192.0))] {
        let got = comm(&s, tokens as u32);
        assert!((got - 160.0 * want * 1e9).abs() <= 1.0, "{tokens} tokens: {got} ns, want {}", 160.0 * want * 1e9);
    }
    assert!(once(700.0) < ring(700.0) && ring(900.0) < once(900.0));
    // A lone token's step pays 160 one-shot latencies: 4.5 ms, not the ring's 12.8 ms.
    assert!((4_450_000.0..4_550_000.0).contains(&comm(&s, 1)), "{}", comm(&s, 1));
    // Without a one-shot figure every all-reduce is a ring.
    let mut no_oneshot = s.clone();
    no_oneshot.oneshot_ns = None;
    assert!((comm(&no_oneshot, 1) - 160.0 * ring(1.0) * 1e9).abs() <= 1.0);
    // TP 8 (log2 n = 3 rounds, 7/4 of the activations; one-shot 7 x): the crossover moves to
    // 92 us x 370.8 GB/s / 5.25 = 6.5 MB, 397 tokens.
    let mut s8 = s.clone();
    s8.gpus = 8;
    let once8 = |t: f64| 28e-6 + 7.0 * t * b / bw;
    let ring8 = |t: f64| 120e-6 + 1.75 * t * b / bw;
    for (tokens, want) in [(1.0, once8(1.0)), (390.0, once8(390.0)), (400.0, ring8(400.0)), (4096.0, ring8(4096.0))] {
        let got = s8.step_ns(0, 0.0, 1, &[(tokens as u32, 0)]) as f64
            - alone.step_ns(0, 0.0, 1, &[(tokens as u32, 0)]) as f64;
        assert!((got - 160.0 * want * 1e9).abs() <= 1.0, "TP8 {tokens} tokens: {got} ns, want {}", 160.0 * want * 1e9);
    }
    assert!(once8(390.0) < ring8(390.0) && ring8(400.0) < once8(400.0));
}

/// Inputs that would overflow the clock, never finish or exhaust memory are refused with
/// the file, the key and the limit.
#[test]
fn runaway_inputs_are_refused() {
    let m = format!("{EIGHT_B}\nprompt-tokens = 200\noutput-tokens = 20");
    let bad = |model: &str, region: &str, duration: &str| {
        spec_from_text(&scenario(model, region, duration), "bad.toml", &Catalog::builtin()).unwrap_err().to_string()
    };
    let profile = format!("rate = 5\nprofile = [{}]", vec!["1e30"; 24].join(", "));
    let e = bad(&m, &profile, "1s");
    assert!(e.contains("bad.toml") && e.contains("profile") && e.contains("at most 10000000"), "{e}");
    // The run's size is checked by the callers at the duration they run (`--duration` may
    // shorten a scenario's own).
    let size = |region: &str, duration: &str| {
        let spec = spec_from_text(&scenario(&m, region, duration), "t.toml", &Catalog::builtin()).unwrap();
        spec.check_run_size(spec.duration.0)
    };
    let e = size("rate = 10000000", "20s").unwrap_err();
    assert!(e.contains("2.000e8 requests") && e.contains("at most 5e7"), "{e}");
    assert!(size("rate = 10000000", "2s").is_ok());
    // A daily profile counts the hours the run covers: one busy hour at 300,000 per second.
    let busy = format!("rate = 300000\nprofile = [1{}]", ", 0".repeat(23));
    let e = size(&busy, "1h").unwrap_err();
    assert!(e.contains("1.080e9 requests"), "{e}");
    // In a quiet hour it sends nothing, but the thinning still draws at the peak rate.
    let e = size(&busy.replace("profile = [1", "utc-offset-hours = 1\nprofile = [1"), "1h").unwrap_err();
    assert!(e.contains("1.080e9 draws"), "{e}");
    // Half an hour behind UTC, the busy local hour 0 starts 30 min into the run.
    let e = size(&busy.replace("profile = [1", "utc-offset-hours = -0.5\nprofile = [1"), "1h").unwrap_err();
    assert!(e.contains("5.400e8 requests"), "{e}");
    // Offsets are whole quarter hours from -12 to 14.
    for off in ["5.2", "-12.25", "14.5", "nan"] {
        let e = bad(&m, &format!("rate = 1\nutc-offset-hours = {off}"), "1s");
        assert!(e.contains("utc-offset-hours") && e.contains("whole quarter hours"), "{off}: {e}");
    }
    // Bursty periods shorter than 1 ms would toggle without end.
    let e =
        bad(&m, "rate = 1\narrivals = \"bursty\"\nburst-factor = 1.5\nburst-on = \"1ns\"\nburst-off = \"1ns\"", "1s");
    assert!(e.contains("burst-on") && e.contains("at least 1ms"), "{e}");
    // A closed loop sends at most users x (1 + duration / a lone request's time), and no
    // faster than its sites can serve (twice their capacity).
    assert!(size("concurrency = 4096", "1h").is_ok());
    let e = size("concurrency = 4096", "366d").unwrap_err();
    assert!(e.contains("requests"), "{e}");
    // A request count bounds the run whatever its duration, and sizes its buffers.
    assert!(size("rate = 100000\nrequests = 1000", "366d").is_ok());
    let spec =
        spec_from_text(&scenario(&m, "rate = 100000\nrequests = 1000", "366d"), "t.toml", &Catalog::builtin()).unwrap();
    assert_eq!(simulate(&spec, &Run::new(&spec)).regions[0].requests, 1000);
    let rated = "gpus-per-server = 1\nprefill-tokens-per-s = 1000\ndecode-tokens-per-s = 1e-12\n\
                 prompt-tokens = 200\noutput-tokens = 20";
    let e = bad(rated, "rate = 1", "1s");
    assert!(e.contains("decode-tokens-per-s") && e.contains("0.001 to 1e18") && e.contains("got 1e-12"), "{e}");
    let e = bad(&m.replace("step-overhead = \"1ms\"", "step-overhead = \"2h\""), "rate = 1", "1s");
    assert!(e.contains("step-overhead") && e.contains("at most 1h"), "{e}");
    let text = disaggregated("capacity = \"1Mbps\"\nbackground = 0.99");
    let e = spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("dci[1].background") && e.contains("below 1 Mb/s"), "{e}");
    // Without a background the capacity is to blame, and a rate just under 1 Mb/s does not
    // read as 1 Mb/s.
    let text = disaggregated("capacity = \"999999bps\"");
    let e = spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("dci[1].capacity") && e.contains("(999999 b/s:"), "{e}");
    // Just past the farthest optic or the 50,000 km bound, metres show the difference.
    let far = disaggregated("").replace("distance = \"1000km\"", "distance = \"1000.0001km\"");
    let e = spec_from_text(&far, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(
        e.contains("no coherent optic in the catalog reaches 1000000.1m: the farthest, 400g-zr-plus, reaches 1000km"),
        "{e}"
    );
    let e = spec_from_text(
        &disaggregated("capacity = \"100Gbps\"").replace("distance = \"1000km\"", "distance = \"50000.0001km\""),
        "bad.toml",
        &Catalog::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expected at most 50000km (past any path on Earth), got 50000000.1m"), "{e}");
    // Users resend after failover-detect: at least 1 ms.
    let text = scenario(&m, "concurrency = 4", "1s")
        .replace("policy = \"nearest\"", "policy = \"nearest\"\nfailover-detect = \"1us\"");
    let e = spec_from_text(&text, "bad.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("inference.failover-detect") && e.contains("1ms to 1h"), "{e}");
    // A request longer than the model's context (Llama 3.1: 131,072 tokens).
    let e = bad(&format!("{EIGHT_B}\nprompt-tokens = 131000\noutput-tokens = 1000"), "rate = 1", "1s");
    assert!(e.contains("prompt-tokens") && e.contains("132000 tokens") && e.contains("context of 131072"), "{e}");
    // A value the model takes from the catalog says so.
    let cat = Catalog::with_overlay("[serving]\nmax-batch = 1000000\n", "mine.toml").unwrap();
    let text = scenario(
        "llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\nprompt-tokens = 100\noutput-tokens = 10",
        "rate = 1",
        "1s",
    );
    let e = spec_from_text(&text, "bad.toml", &cat).unwrap_err().to_string();
    assert!(e.contains("max-batch") && e.contains("(the catalog's [serving] max-batch)"), "{e}");
    // Catalog overlays: the serving latencies and the simulation's knobs are bounded too.
    for (overlay, want) in [
        ("[serving]\nstep-overhead = \"2h\"\n", "step-overhead must be at most 1h"),
        ("[simulation]\nqps-per-connection = 100000\n", "qps-per-connection must be at most 128, got 100000"),
        ("[simulation]\ncompletion-tolerance = nan\n", "completion-tolerance must be in [0, 0.5], got NaN"),
        ("[serving]\nflops-efficiency = 2.0\n", "flops-efficiency must be from 0.001 to 1, got 2"),
        ("[serving]\nmoe-efficiency = 1e-300\n", "moe-efficiency must be from 0.001 to 1, got 1e-300"),
        ("[inference]\ntarget-utilization = 1e300\n", "target-utilization must be in (0, 1], got 1e300"),
        ("[inference]\nroute-factor = 1e300\n", "route-factor must be from 1 to 10, got 1e300"),
        ("[inference]\nroute-factor = inf\n", "route-factor must be from 1 to 10, got inf"),
        ("[inference]\nttft-p99 = \"0s\"\n", "ttft-p99 must be above 0"),
        (
            "[serving]\ntoken-budget = 1e300\n",
            "`token-budget`: expected a whole number from 0 to 4294967295, got 1e300",
        ),
    ] {
        let e = Catalog::with_overlay(overlay, "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains(want), "{e}");
    }
}

/// A run whose sites cannot serve its requests in any sensible time stops 1e18 ns (31.7
/// years) after its arrivals end, counting what is left as unserved, instead of letting the
/// nanosecond clock saturate and report years as latencies.
#[test]
fn a_run_that_cannot_drain_stops_at_its_horizon() {
    use meshway_infer::sim::DRAIN_HORIZON_NS;
    // Each prompt takes 1e9 s (31.7 years) to prefill.
    let rated = "gpus-per-server = 1\nprefill-tokens-per-s = 0.001\ndecode-tokens-per-s = 1000\n\
                 prompt-tokens = 1000000\noutput-tokens = 10\nmax-batch = 4";
    let spec =
        spec_from_text(&scenario(rated, "rate = 1\nrequests = 5", "10s"), "t.toml", &Catalog::builtin()).unwrap();
    let r = simulate(&spec, &Run::new(&spec));
    assert_eq!((r.requests, r.unfinished, r.regions[0].unserved), (5, 5, 5));
    assert_eq!(r.end_ns, 10_000_000_000 + DRAIN_HORIZON_NS);
    assert!(!r.all_met && !r.regions[0].met);
    assert!(r.sites[0].gpu_utilization <= 1.0, "{}", r.sites[0].gpu_utilization);
    // Twenty servers each busy to the horizon: their busy time (2e19 ns) is summed without
    // wrapping a u64, so the site reads fully busy.
    let text = scenario(rated, "rate = 4\nrequests = 40", "10s").replace("gpus = 1", "gpus = 20");
    let spec = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap();
    let r = simulate(&spec, &Run::new(&spec));
    assert_eq!((r.sites[0].servers, r.unfinished), (20, 40));
    assert!(r.sites[0].busy > 0.99 && r.sites[0].gpu_utilization > 0.99, "{:?}", r.sites[0]);
    // At 1,000 tokens/s the same run drains in about 5,000 s and nothing is cut off.
    let fast = rated.replace("prefill-tokens-per-s = 0.001", "prefill-tokens-per-s = 1000");
    let spec =
        spec_from_text(&scenario(&fast, "rate = 1\nrequests = 5", "10s"), "t.toml", &Catalog::builtin()).unwrap();
    let r = simulate(&spec, &Run::new(&spec));
    assert_eq!((r.unfinished, r.regions[0].unserved), (0, 0));
    assert!(r.end_ns > 5_000_000_000_000 && r.end_ns < 5_100_000_000_000, "{}", r.end_ns);
    // Runs longer than 10 years are refused before they start.
    let e = spec.check_run_size(11 * 365 * 86_400 * 1_000_000_000).unwrap_err();
    assert!(e.contains("at most 10 years"), "{e}");
}

/// Latency-aware routing estimates a prefill-only site's wait from its prefill rate (its
/// servers prefill one prompt at a time): before, it took such a site's servers to hold a
/// full decode batch each, saw no wait until 2,048 requests queued at 8 servers, and kept
/// New York on its busy edge at 20 s p99 while the next edge, 47 ms away, idled at 7%.
#[test]
fn latency_aware_routing_spreads_prompts_off_a_busy_prefill_site() {
    let text = include_str!("../../../examples/inference-disaggregated.toml")
        .replace("policy = \"nearest\"", "policy = \"latency-aware\"")
        .replace("rate = 6\n", "rate = 75\n");
    let spec = spec_from_text(&text, "dis.toml", &Catalog::builtin()).unwrap();
    let rep = simulate(&spec, &Run::new(&spec));
    let ny = rep.regions.iter().find(|r| r.name == "new-york").unwrap();
    let houston = rep.regions.iter().find(|r| r.name == "houston").unwrap();
    let south = rep.sites.iter().find(|s| s.name == "edge-south").unwrap();
    assert!(ny.met && ny.ttft.p99_ns < ny.ttft_p99_objective_ns, "{:?}", ny.ttft);
    assert!(
        south.requests > 2 * houston.requests,
        "{} at edge-south, {} from houston",
        south.requests,
        houston.requests
    );
    // New York's first tokens are split over the two edges: the report says how much its
    // main prefill site made (the table showed the site alone): the larger part, not all.
    assert!(ny.prefill_site_share >= 0.5 && ny.prefill_site_share < 0.995, "{}", ny.prefill_site_share);
    assert_eq!(houston.prefill_site.as_deref(), Some("edge-south"));
}

/// FP4 (NVFP4) weights: 4.5 bits a parameter (4-bit values and an 8-bit scale per 16), the
/// GPU's FP4 matmul rate for the matrix work, and attention in FP8 (an FP8 cache), not at
/// FP4. A GPU without FP4 refuses FP4 weights or an FP4 cache by name.
#[test]
fn fp4_weights_take_their_bytes_and_rate_and_attention_keeps_the_caches() {
    let m =
        "llm = \"llama-3.1-70b\"\ngpu = \"b200\"\ngpus-per-server = 1\nprecision = \"fp4\"\nkv-precision = \"fp8\"\n\
             flops-efficiency = 0.5\nbandwidth-efficiency = 0.8\nmemory-utilization = 0.9\nmemory-reserve = \"2GB\"\n\
             prompt-tokens = 1000\noutput-tokens = 100";
    let s = shape(&scenario(m, "concurrency = 1", "1ns"));
    assert_eq!((s.precision, s.kv_precision), ("fp4", "fp8"));
    assert_eq!(s.weight_bytes, 70.6e9 * 0.5625); // 39.7 GB
    assert_eq!(s.kv_bytes_per_token, 2.0 * 80.0 * 8.0 * 128.0);
    let room: f64 = (183_359.0 * 1_048_576.0 - 2e9 - 70.6e9 * 0.5625) * 0.9;
    assert_eq!(s.kv_capacity_tokens, (room / 163_840.0).floor() as u64);
    // B200: FP4 5,500 TFLOPS and FP8 3,432.5, both measured.
    assert_eq!((s.flops, s.attn_flops), (5500e12 * 0.5, 3432.5e12 * 0.5));
    // A prefill of 8,192 tokens from an empty cache: the matrix work at FP4, attention's
    // 4 x layers x q_dim x c^2 / 2 FLOPs at FP8 (both above their memory terms).
    let mut s0 = s.clone();
    s0.step_overhead_ns = 0;
    s0.knee = None;
    let c: f64 = 8192.0;
    let gemm = 2.0 * 70.6e9 * c / (5500e12 * 0.5);
    let attn = 4.0 * 80.0 * 8192.0 * (c * c / 2.0) / (3432.5e12 * 0.5);
    assert!(39.7e9 / (8e12 * 0.8) < gemm && c * 163_840.0 / (8e12 * 0.8) < attn);
    assert_eq!(s0.step_ns(0, 0.0, 1, &[(8192, 0)]), ((gemm + attn) * 1e9).ceil() as u64);
    // The same weights with an FP4 cache: half a byte and a scale per element, attention
    // still at FP8.
    let s4 = shape(&scenario(&m.replace("kv-precision = \"fp8\"", "kv-precision = \"fp4\""), "concurrency = 1", "1ns"));
    assert_eq!((s4.kv_bytes_per_token, s4.attn_flops), (2.0 * 80.0 * 8.0 * 128.0 * 0.5625, 3432.5e12 * 0.5));
    // BF16 weights with an FP8 cache attend at FP8; FP8 weights with a BF16 cache at BF16.
    let mixed = |w: &str, kv: &str| {
        shape(&scenario(
            &m.replace("precision = \"fp4\"", &format!("precision = \"{w}\""))
                .replace("kv-precision = \"fp8\"", &format!("kv-precision = \"{kv}\"")),
            "concurrency = 1",
            "1ns",
        ))
    };
    // FP8 attention needs both the weights and the cache in 8 bits or less: BF16 weights
    // with an FP8 cache, and FP8 weights with a BF16 cache, attend in BF16.
    assert_eq!(mixed("fp8", "fp8").attn_flops, 3432.5e12 * 0.5);
    assert_eq!(mixed("bf16", "fp8").attn_flops, 1745e12 * 0.5);
    assert_eq!(mixed("fp8", "bf16").attn_flops, 1745e12 * 0.5);
    // FP4 weights without a stated cache get NVIDIA's checkpoints' FP8 cache.
    let d = shape(&scenario(&m.replace("kv-precision = \"fp8\"\n", ""), "concurrency = 1", "1ns"));
    assert_eq!((d.precision, d.kv_precision), ("fp4", "fp8"));
    // A100 has no FP8: an FP8 cache beside FP16 weights is stored in 8 bits and attends in
    // BF16/FP16 (its measured 271.2 TFLOPS).
    let a100 = "llm = \"llama-3.1-8b\"\ngpu = \"a100-sxm\"\ngpus-per-server = 1\nprecision = \"fp16\"\n\
                kv-precision = \"fp8\"\nflops-efficiency = 0.5\nprompt-tokens = 100\noutput-tokens = 10";
    let a = shape(&scenario(a100, "concurrency = 1", "1ns"));
    assert_eq!((a.kv_bytes_per_token, a.attn_flops), (2.0 * 32.0 * 8.0 * 128.0, 271.2e12 * 0.5));
    // An FP4 cache needs a GPU with FP4.
    let e = spec_from_text(
        &scenario(&a100.replace("kv-precision = \"fp8\"", "kv-precision = \"fp4\""), "concurrency = 1", "1ns"),
        "t.toml",
        &Catalog::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`model[1].kv-precision`")
            && e.contains("an FP4 KV cache needs a GPU with FP4, and gpu \"a100-sxm\" has none"),
        "{e}"
    );
    // H100 has no FP4.
    let text = scenario(&m.replace("b200", "h100-sxm"), "concurrency = 1", "1ns");
    let e = spec_from_text(&text, "t.toml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(
        e.contains("`model[1].precision`") && e.contains("gpu \"h100-sxm\" has no FP4 (no `fp4-flops` in the catalog): use fp8 or bf16, or a GPU with FP4 (b200, gb200, gb300)"),
        "{e}"
    );
}
