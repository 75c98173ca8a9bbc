//! The repository's serving validation set (validation/inference/) against meshway's
//! inference model, with the bounds it holds today asserted so a regression fails.

use meshway_fabric::Catalog;
use meshway_validate::inference::run;

fn read(name: &str) -> (String, String) {
    let p = format!("{}/../../validation/inference/{name}", env!("CARGO_MANIFEST_DIR"));
    (p.clone(), std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
}

#[test]
fn serving_validation_set_holds_its_bounds() {
    let files = vec![read("throughput.csv"), read("latency-load.csv")];
    let (sf, setups) = read("setups.toml");
    let r = run(&files, &setups, &sf, &Catalog::builtin(), &mut |_, _| {}).unwrap();
    assert!(r.rows.len() >= 300, "{} rows run", r.rows.len());
    let mut figures = 0;
    for g in &r.groups {
        figures += g.rows;
        // B200 in FP4 and GB200 in FP8 are held out and outside: asserted on their own below.
        if g.setup.contains("fp4") || g.setup.contains("gb200") {
            continue;
        }
        // Today's medians are 2-15% and 75-100% of each group's rows are within the issue's
        // bounds (15% throughput, 20% latency). The target is every row within.
        let (median, within) = (0.16, 0.74);
        assert!(
            g.median_abs_error < median,
            "{} {} {}: median |error| {:.3}",
            g.setup,
            g.model,
            g.metric,
            g.median_abs_error
        );
        assert!(g.within_bound >= within, "{} {} {}: {:.2} within bound", g.setup, g.model, g.metric, g.within_bound);
    }
    assert!(figures >= 450, "{figures} figures compared");
    // Offline throughput of the 70B model across TP 1-8, H100 and H200: 85% within 15%.
    let g = r
        .groups
        .iter()
        .find(|g| g.model == "Llama 3.1 70B" && g.metric == "output tokens/s" && g.setup.contains("0.17"))
        .unwrap();
    assert!(g.within_bound >= 0.8 && g.median_abs_error < 0.10, "{g:?}");
    let group = |setup: &str, model: &str| {
        r.groups.iter().find(|g| g.setup == setup && g.model == model).unwrap_or_else(|| panic!("{setup} {model}"))
    };
    // Llama 3.1 405B on 8 x H200, not used in the calibration: every row within 15%.
    let g = group("trtllm-0.17-fp8-405b-offline", "Llama 3.1 405B");
    assert!(g.within_bound == 1.0 && g.median_abs_error < 0.08, "{g:?}");
    // Held out: TensorRT-LLM 1.0's PyTorch backend (another engine, NVIDIA's FP8
    // checkpoints), 8B, 70B and 405B on H100 and H200: every row within 15%.
    for (model, median) in [("Llama 3.1 8B", 0.07), ("Llama 3.3 70B", 0.03), ("Llama 3.1 405B", 0.05)] {
        let g = group("trtllm-1.0-fp8-offline", model);
        assert!(g.rows == 20 && g.within_bound >= 0.95 && g.median_abs_error < median, "{g:?}");
    }
    // Held out: B200 in FP4 (NVFP4 weights, FP8 cache), the first B200 rows: meshway is fast
    // on every row (its step has no activation quantization; [[known]] says what is known),
    // 70B by a median 29%, 405B by 16%. Bounds at today's figures so a regression fails.
    for (setup, model, rows, median) in [
        ("trtllm-1.0-fp4-offline", "Llama 3.3 70B", 10, 0.30),
        ("trtllm-1.0-fp4-offline", "Llama 3.1 405B", 10, 0.17),
        ("trtllm-post-1.0-fp4-offline", "Llama 3.3 70B", 5, 0.30),
    ] {
        let g = group(setup, model);
        assert!(g.rows == rows && g.median_abs_error < median && g.max_abs_error < 0.45, "{g:?}");
    }
    // The errors of every figure on `gpu` (and `gpus` of them, when given).
    let errors = |gpu: &str, gpus: Option<u32>| -> Vec<f64> {
        r.rows
            .iter()
            .filter(|x| x.gpu == gpu && gpus.is_none_or(|n| x.gpus == n))
            .flat_map(|x| x.figures.iter().map(|f| f.error))
            .collect()
    };
    let fp4 = errors("B200", None);
    assert!(fp4.len() == 25 && fp4.iter().all(|&e| e > 0.10), "{fp4:?}");
    // Held out: GB200 in FP8 (Azure's guide, 1,000 requests a length, the engines' batch
    // settings from trtllm-bench's build heuristic): meshway is above every row, the 70B by a
    // median 22% (19-30%), as on the B200 FP4 rows; the 8B by 2-46%, most at 128/128.
    let g = group("azure-trtllm-gb200-fp8-70b", "Llama 3 70B");
    assert!(g.rows == 6 && g.median_abs_error < 0.25 && g.max_abs_error < 0.35, "{g:?}");
    let g = group("azure-trtllm-gb200-fp8-8b", "Llama 3.1 8B");
    assert!(g.rows == 6 && g.median_abs_error < 0.18 && g.max_abs_error < 0.50, "{g:?}");
    let (big, small) = (errors("GB200", Some(4)), errors("GB200", Some(1)));
    assert!(big.len() == 6 && big.iter().all(|&e| e > 0.15), "{big:?}");
    assert!(small.len() == 6 && small.iter().all(|&e| e > 0.0), "{small:?}");
    // Held out: the developer guide's 70B at TP2, up to 32k-token prompts: all within 10%.
    let g = group("trtllm-post-1.0-fp8-offline", "Llama 3.3 70B");
    assert!(g.rows == 7 && g.max_abs_error < 0.10, "{g:?}");
    // Held out: the 8B on A100 in FP16: every row within 15%; Mixtral all but one (+16% at
    // 500/2000 on TP4 with moe-efficiency 0.75).
    let g = group("trtllm-0.17-fp16-a100-offline", "Llama 3.1 8B");
    assert!(g.within_bound == 1.0, "{g:?}");
    let g = group("trtllm-0.17-fp16-a100-offline", "Mixtral 8x7B");
    assert!(g.rows == 27 && g.within_bound >= 0.96 && g.median_abs_error < 0.08, "{g:?}");
    // The 70B on TP4 in BF16 online (0.14): a lone request's inter-token latency is within 20%
    // (one-shot all-reduces; with rings alone it was 22-36% slow), and 85% of the group's rows
    // (each rate row sends exactly its 500 requests).
    let g = r
        .groups
        .iter()
        .find(|g| g.setup == "trtllm-0.14-bf16-online" && g.model == "Llama 3.1 70B" && g.metric == "itl ms");
    assert!(g.is_some_and(|g| g.within_bound >= 0.85 && g.median_abs_error < 0.11), "{g:?}");
    // Every row not run says why.
    assert!(r.skipped.iter().all(|s| !s.why.is_empty()));
    // Every setup that ran rows says what it aligned, with its engine keys.
    assert_eq!(r.setups.len(), 11);
    assert!(r
        .setups
        .iter()
        .all(|s| !s.description.is_empty() && s.model.contains("max-batch") && s.assumption.is_some()));
}

/// A row's request count comes from the row, then the setup's table by length, then the
/// setup's default; a per-GPU figure is compared as the whole group's output.
#[test]
fn request_counts_by_length_and_per_gpu_figures() {
    let csv = "engine_version,model,precision,gpu,num_gpus,input_tokens,output_tokens,metric,value\n\
               t,Llama 3.1 8B,FP8,H100,1,128,128,Total Output Throughput (tokens/sec),1000\n\
               t,Llama 3.1 8B,FP8,H100,2,128,64,Output Throughput per GPU (tokens/sec/GPU),1000\n";
    let setups = "[[setup]]\nname = \"t\"\nfile = \"throughput.csv\"\nmatch = { engine_version = \"t\" }\n\
                  models = { \"Llama 3.1 8B\" = \"llama-3.1-8b\" }\ngpus = { \"H100\" = \"h100-sxm\" }\n\
                  model = { precision = \"fp8\", kv-precision = \"fp8\" }\nrequests = 7\n\
                  requests-by-length = { \"128/128\" = 40 }\ndescription = \"d\"\n";
    let files = vec![("throughput.csv".to_string(), csv.to_string())];
    let r = run(&files, setups, "s.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap();
    assert_eq!(r.rows.len(), 2);
    // Rows are named by their line in the file (the header is line 1).
    assert_eq!((r.rows[0].line, r.rows[1].line), (2, 3));
    assert_eq!((r.rows[0].load.as_str(), r.rows[1].load.as_str()), ("offline 40", "offline 7"));
    assert_eq!((r.rows[0].figures[0].published, r.rows[1].figures[0].published), (1000.0, 2000.0));
}

/// A figure outside its bound carries the reason `[[known]]` gives for its rows and metric;
/// one within its bound, or of another metric, carries none.
#[test]
fn known_reasons_mark_figures_outside_their_bound() {
    let files = vec![read("latency-load.csv"), read("throughput.csv")];
    let (sf, setups) = read("setups.toml");
    let r = run(&files, &setups, &sf, &Catalog::builtin(), &mut |_, _| {}).unwrap();
    let mut marked = 0;
    for x in &r.rows {
        for f in &x.figures {
            let outside = f.error.abs() > meshway_validate::inference::bound(f.metric);
            let all_at_once = x.load.starts_with("offline");
            let lengths = (x.input_tokens, x.output_tokens);
            let dataset_row =
                lengths == (202, 214) && (f.metric == "output tokens/s" || (f.metric == "itl ms" && all_at_once));
            let saturated_itl = lengths == (467, 16) && f.metric == "itl ms" && all_at_once;
            let nim = x.gpus == 2 && f.metric == "ttft ms";
            // The one FP8 70B run that fell x0.725 from 128/2048 to 500/2000 (x0.81-0.88 on
            // the page's other FP8 70B setups).
            let low_run = x.file == "throughput.csv"
                && x.gpus == 1
                && lengths == (500, 2000)
                && x.model == "Llama 3.1 70B"
                && x.gpu.starts_with("H200");
            // B200 in FP4 (held out), fast on every row.
            let fp4 = x.gpu == "B200";
            // GB200 in FP8 (held out), fast on nine of twelve rows.
            let gb200 = x.gpu == "GB200";
            let known = dataset_row || saturated_itl || nim || low_run || fp4 || gb200;
            assert_eq!(f.why.is_some(), outside && known, "{x:?}");
            marked += usize::from(f.why.is_some());
        }
    }
    // 11 of the 202/214 throughput figures and 4 of their ITL figures, 2 467/16 ITL figures
    // all at once, the NIM 50-user TTFT, the low H200 70B throughput run, 22 of the 25 B200
    // FP4 throughput figures and 9 of the 12 GB200 FP8 ones.
    assert_eq!(marked, 50);
    // Every [[known]] entry marks something: a reason that marks nothing is stale.
    let reasons: std::collections::BTreeSet<&str> =
        r.rows.iter().flat_map(|x| x.figures.iter().filter_map(|f| f.why.as_deref())).collect();
    let table: toml::Table = toml::from_str(&setups).unwrap();
    let known = table["known"].as_array().unwrap();
    assert!(known.iter().all(|k| reasons.contains(k["why"].as_str().unwrap())));
    // Mistakes in [[known]] and requests-by-length are refused, naming the entry and the key.
    let refused = |extra: &str| {
        let text = format!("{setups}\n{extra}");
        run(&files, &text, "s.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap_err().to_string()
    };
    let e = refused("[[known]]\nfile = \"latency-load.csv\"\nmatch = {}\nmetric = \"tpot\"\nwhy = \"w\"\n");
    assert!(e.contains("s.toml") && e.contains("metric") && e.contains("\"tpot\"") && e.contains("\"itl ms\""), "{e}");
    let e = refused("[[known]]\nfile = \"latency-load.csv\"\nmatch = { isl = \"1\" }\nwhy = \"w\"\n");
    // The appended entry comes after the set's own.
    let at = format!("known[{}]", known.len() + 1);
    assert!(e.contains(&at) && e.contains("\"isl\" is not a column of latency-load.csv"), "{e}");
    let e = refused("[[known]]\nfile = \"latency-load.csv\"\nmatch = { load = 32 }\nwhy = \"w\"\n");
    assert!(e.contains("s.toml") && e.contains("a cell's text") && e.contains("list of them"), "{e}");
    let e = refused("[[known]]\nfile = \"latency-load.csv\"\nmatch = { load = [] }\nwhy = \"w\"\n");
    assert!(e.contains("s.toml") && e.contains("length 0"), "{e}");
    let e = refused("[[known]]\nfile = \"inference/latency-load.csv\"\nmatch = {}\nwhy = \"w\"\n");
    assert!(e.contains("expected a file name, one of throughput.csv, latency-load.csv"), "{e}");
    let e = refused("[[known]]\nfile = \"latency-loads.csv\"\nmatch = {}\nwhy = \"w\"\n");
    assert!(e.contains("file") && e.contains("one of throughput.csv, latency-load.csv"), "{e}");
    let e = refused(
        "[[setup]]\nname = \"x\"\nfile = \"latency-load.csv\"\nmatch = {}\nmodels = {}\ngpus = {}\n\
         requests-by-length = { \"128 x 128\" = 5 }\ndescription = \"d\"\n",
    );
    assert!(e.contains("setup \"x\"") && e.contains("\"128 x 128\"") && e.contains("\"128/2048\""), "{e}");
}

#[test]
fn bad_setup_is_a_clear_error() {
    let files = vec![read("throughput.csv")];
    let e = run(&files, "[[setup]]\nname = 1\n", "bad.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().starts_with("bad.toml:2"), "{e}");
}

/// Tables and setups that would lose rows or figures silently are refused, naming the file,
/// the line or key, and what was expected.
#[test]
fn bad_serving_tables_are_refused() {
    let setup = "[[setup]]\nname = \"t\"\nfile = \"throughput.csv\"\nmatch = { engine_version = \"t\" }\n\
                 models = { \"Llama 3.1 8B\" = \"llama-3.1-8b\" }\ngpus = { \"H100\" = \"h100-sxm\" }\n\
                 model = { precision = \"fp8\", kv-precision = \"fp8\" }\nrequests = 7\ndescription = \"d\"\n";
    let head = "engine_version,model,precision,gpu,num_gpus,input_tokens,output_tokens,metric,value\n";
    let row = "t,Llama 3.1 8B,FP8,H100,1,128,128,Total Output Throughput (tokens/sec),1000\n";
    let err = |csv: String, setups: &str| {
        let files = vec![("d/throughput.csv".to_string(), csv)];
        run(&files, setups, "s.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap_err().to_string()
    };
    let e = err(head.replace(",value", ",val") + row, setup);
    assert!(e.contains("throughput.csv:1") && e.contains("expected a column \"value\""), "{e}");
    let e = err(format!("{head}{}", row.replace(",1000", ",abc")), setup);
    assert!(e.contains("throughput.csv:2") && e.contains("value as a positive number") && e.contains("\"abc\""), "{e}");
    let e = err(format!("{head}{}", row.replace(",1000", ",inf")), setup);
    assert!(e.contains("throughput.csv:2") && e.contains("\"inf\""), "{e}");
    let e = err(head.to_string(), setup);
    assert!(e.contains("throughput.csv:1") && e.contains("at least one row"), "{e}");
    let e = err(head.replace(",metric,", ",model,") + row, setup);
    assert!(e.contains("column \"model\" appears twice"), "{e}");
    let e = err(format!("{head}{row}"), &setup.replace("engine_version =", "engine_versoin ="));
    assert!(e.contains("s.toml") && e.contains("\"engine_versoin\" is not a column of throughput.csv"), "{e}");
    let e = err(format!("{head}{row}"), &setup.replace("file = \"throughput.csv\"", "file = \"nosuch.csv\""));
    assert!(e.contains("setup \"t\": file") && e.contains("\"nosuch.csv\" is not one of"), "{e}");
    let e = err(format!("{head}{row}"), &format!("{setup}{setup}"));
    assert!(e.contains("setup \"t\": name"), "{e}");
    // A latency row with an unknown load kind or a load that is not a rate.
    let lhead = "engine_version,model,precision,gpu,num_gpus,input_tokens,output_tokens,load_kind,load,\
                 ttft_ms,itl_ms,throughput,throughput_unit,num_requests\n";
    let lsetup = setup.replace("throughput.csv", "latency-load.csv");
    let lerr = |load_kind: &str, load: &str| {
        let csv = format!("{lhead}t,Llama 3.1 8B,FP8,H100,1,128,128,{load_kind},{load},20,8,900,output tokens/s,50\n");
        let files = vec![("d/latency-load.csv".to_string(), csv)];
        run(&files, &lsetup, "s.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap_err().to_string()
    };
    let e = lerr("nosuch", "2");
    assert!(e.contains("latency-load.csv:2") && e.contains("load_kind rate_rps or concurrency"), "{e}");
    let e = lerr("rate_rps", "nan");
    assert!(e.contains("latency-load.csv:2") && e.contains("load as 0.001 to 10000000"), "{e}");
    let e = lerr("concurrency", "0");
    assert!(e.contains("1 to 1000000 concurrent users"), "{e}");
    // A request count that is there but unreadable or out of range is refused at its row;
    // it used to fall back to the setup's count (7), or blame the setup.
    for bad in ["abc", "0", "1000000000000"] {
        let csv = format!("{lhead}t,Llama 3.1 8B,FP8,H100,1,128,128,rate_rps,2,20,8,900,output tokens/s,{bad}\n");
        let files = vec![("d/latency-load.csv".to_string(), csv)];
        let e = run(&files, &lsetup, "s.toml", &Catalog::builtin(), &mut |_, _| {}).unwrap_err().to_string();
        assert!(
            e.contains("latency-load.csv:2")
                && e.contains("num_requests as 1 to 1000000 requests")
                && e.contains(&format!("{bad:?}")),
            "{e}"
        );
    }
}

/// The path model against Azure's published inter-region round trips: with a route factor
/// per pair of continents and one fixed cost (both fitted to this table), and paths between
/// continents routed over the catalog's cable landings, 83% of the 52 pairs are within 15%
/// (median 8.4%); along the great circle it was 75% (9.5%), with one factor for all pairs
/// 63% (11.8%).
#[test]
fn wan_round_trips_hold_their_bounds() {
    let (f, text) = read("wan-rtt.csv");
    let cat = Catalog::builtin();
    let (rows, groups) = meshway_validate::inference::run_wan(&text, &f, &cat).unwrap();
    assert_eq!(rows.len(), 52);
    let all = groups.iter().find(|g| g.model == "all").unwrap();
    assert!(all.within_bound >= 0.82 && all.median_abs_error < 0.09, "{all:?}");
    assert!(groups.iter().all(|g| g.setup == "wan-rtt"));
    let i = cat.inference.as_ref().unwrap();
    let loc = |n: &str| i.wan_gateways.iter().find(|g| g.name == n).unwrap().location;
    let gc = |a: [f64; 2], b: [f64; 2]| meshway_validate::inference::great_circle_km(a[0], a[1], b[0], b[1]);
    // The closed form of a routed path: the sum of its legs, each at its factor, x 4.9 us
    // per km, + the pair's fixed cost, both ways.
    let routed = |from: [f64; 2], via: &[String], to: [f64; 2], factors: &[f64], fixed_ms: f64| {
        let mut pts = vec![from];
        pts.extend(via.iter().map(|v| loc(v)));
        pts.push(to);
        assert_eq!(pts.len() - 1, factors.len(), "{via:?}");
        let km: f64 = pts.windows(2).zip(factors).map(|(w, f)| gc(w[0], w[1]) * f).sum();
        (km, 2.0 * (km * 4.9e-3 + fixed_ms))
    };
    // West US 2 to West Europe: over North America (1.78) to an Atlantic landing, the
    // cable (1.26), Europe (1.20); the routed path is far longer than the great circle.
    let r = rows.iter().find(|r| r.from == "West US 2" && r.to == "West Europe").unwrap();
    let (km, ms) = routed([47.233, -119.852], &r.via, [52.3667, 4.9], &[1.78, 1.26, 1.2], 2.25);
    assert!((r.meshway_ms - ms).abs() < 1e-6 && (r.routed_km - km).abs() < 1e-6 && r.route_factor > 1.5, "{r:?}");
    // Brazil South to West Europe: through North America, four landings (a pair without a
    // fitted route, so 1.26 on the Monet cable and 4.6 ms).
    let r = rows.iter().find(|r| r.from == "Brazil South" && r.to == "West Europe").unwrap();
    assert_eq!(r.via, ["praia-grande", "boca-raton", "new-york", "bude"]);
    let (_, ms) = routed([-23.55, -46.633], &r.via, [52.3667, 4.9], &[1.26, 1.26, 1.78, 1.26, 1.2], 4.6);
    assert!((r.meshway_ms - ms).abs() < 1e-6, "{r:?} {ms}");
    // The Pacific and Europe-Asia cables at their own factors (1.22, 1.78), not the default.
    let r = rows.iter().find(|r| r.from == "West US" && r.to == "Japan East").unwrap();
    let (_, ms) = routed([37.783, -122.417], &r.via, [35.68, 139.77], &[1.78, 1.22, 1.45], 2.25);
    assert!(r.via.len() == 2 && (r.meshway_ms - ms).abs() < 1e-6, "{r:?} {ms}");
    let r = rows.iter().find(|r| r.from == "West Europe" && r.to == "Central India").unwrap();
    let (_, ms) = routed([52.3667, 4.9], &r.via, [18.5822, 73.9197], &[1.2, 1.78, 1.45], 2.25);
    assert!(r.via == ["marseille", "mumbai"] && (r.meshway_ms - ms).abs() < 1e-6, "{r:?} {ms}");
    // Within a continent: the great circle times its factor, no landings.
    let r = rows.iter().find(|r| r.from == "East US" && r.to == "Central US").unwrap();
    assert!(
        (r.meshway_ms - 2.0 * (r.great_circle_km * 1.78 * 4.9e-3 + 2.25)).abs() < 1e-9 && r.via.is_empty(),
        "{r:?}"
    );
    // East US to Brazil South: to Boca Raton over land (1.78), Monet to Praia Grande (1.26,
    // no fitted route for the pair), on to Sao Paulo over land (1.26), + 4.6 ms.
    let r = rows.iter().find(|r| r.class == "NA-SA").unwrap();
    let (_, ms) = routed([37.3719, -79.8164], &r.via, [-23.55, -46.633], &[1.78, 1.26, 1.26], 4.6);
    assert!(r.via == ["boca-raton", "praia-grande"] && (r.meshway_ms - ms).abs() < 1e-6, "{r:?} {ms}");
}

/// Two tables held out of the route model's fit. IBM Cloud (2026): 77% of 78 pairs within
/// 15% (median 6.9%), where the great-circle model put 47% (16.2%). AWS (2017, ~2016 paths,
/// before Monet): 80% of 45 pairs (median 8.3%), where the great-circle model put 56%
/// (11.6%); its misses are what showed the detours, so it is no longer a clean hold-out.
#[test]
fn held_out_wan_round_trips_hold_their_bounds() {
    for (file, n, within, median) in [("wan-rtt-aws.csv", 45, 0.80, 0.085), ("wan-rtt-modern.csv", 78, 0.76, 0.072)] {
        let (f, text) = read(file);
        let (rows, groups) = meshway_validate::inference::run_wan(&text, &f, &Catalog::builtin()).unwrap();
        assert_eq!(rows.len(), n, "{file}");
        let all = groups.iter().find(|g| g.model == "all").unwrap();
        assert!(all.within_bound >= within && all.median_abs_error < median, "{file}: {all:?}");
        assert!(all.setup == file.trim_end_matches(".csv") && rows.iter().all(|r| r.file == file));
    }
    // A coordinate that is not a finite number is refused, naming the line and column.
    let (f, text) = read("wan-rtt-modern.csv");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen("32.78", "NaN", 1);
    let e = meshway_validate::inference::run_wan(&lines.join("\n"), &f, &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains(":2") && e.contains("from_lat") && e.contains("finite"), "{e}");
    // A pair given twice in one direction is refused (it counted twice in the statistics).
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(lines[1].clone());
    let e = meshway_validate::inference::run_wan(&lines.join("\n"), &f, &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains(&format!(":{}", lines.len())) && e.contains("is given twice (line 2 too)"), "{e}");
}

#[test]
fn great_circle_closed_forms() {
    use meshway_validate::inference::great_circle_km;
    // A degree of the equator and a quarter meridian on a 6,371 km sphere.
    assert!((great_circle_km(0.0, 0.0, 0.0, 1.0) - 6371.0 * std::f64::consts::PI / 180.0).abs() < 1e-9);
    assert!((great_circle_km(0.0, 0.0, 90.0, 0.0) - 6371.0 * std::f64::consts::FRAC_PI_2).abs() < 1e-9);
    assert_eq!(great_circle_km(10.0, 20.0, 10.0, 20.0), 0.0);
}

/// A `pair_class` that names no continents (a typo) is refused with its line: it routed the
/// row as if it gave none (East US to East US 2 went from -21% to +23%).
/// A round trip is the same both ways: a row written EU-NA groups with the NA-EU rows (the
/// fitted table had an EU-NA group of 1 beside NA-EU's 6).
#[test]
fn pair_classes_group_whichever_way_they_are_written() {
    let (p, text) = read("wan-rtt.csv");
    let (_, groups) = meshway_validate::inference::run_wan(&text, &p, &Catalog::builtin()).unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.model.as_str()).collect();
    assert!(!names.contains(&"EU-NA") && !names.contains(&"SA-EU"), "{names:?}");
    let na_eu = groups.iter().find(|g| g.model == "NA-EU").unwrap();
    let written = text.lines().filter(|l| l.contains(",NA-EU,") || l.contains(",EU-NA,")).count();
    assert!(text.contains(",EU-NA,"), "the table writes one pair EU-NA");
    assert_eq!(na_eu.rows, written);
}

#[test]
fn a_misspelled_pair_class_is_refused() {
    let (p, text) = read("wan-rtt.csv");
    let bad = text.replacen(",intra-NA,", ",intra-NAA,", 1);
    let e = meshway_validate::inference::run_wan(&bad, &p, &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.contains("wan-rtt.csv:2: column pair_class: \"intra-NAA\" is not intra-<code> or <code>-<code>"), "{e}");
}

/// A setup whose scenario does not build is named where it was written: a key of the setup
/// at its line of setups.toml (with the row it failed for), a length the row gives at the row.
#[test]
fn a_setup_that_does_not_build_is_named_at_its_line() {
    let (tf, table) = read("throughput.csv");
    let (sf, setups) = read("setups.toml");
    let first = table.lines().take(2).collect::<Vec<_>>().join("\n");
    let e = |from: &str, to: &str, first: &str| {
        let bad = setups.replacen(from, to, 1);
        assert_ne!(bad, setups, "{from}");
        let line = bad.lines().position(|l| l.contains(to)).unwrap() + 1;
        let e = run(&[(tf.clone(), first.to_string())], &bad, &sf, &Catalog::builtin(), &mut |_, _| {})
            .unwrap_err()
            .to_string();
        (e, line)
    };
    let (msg, line) = e("token-budget = 8192", "token-budget = 0", &first);
    assert!(
        msg.starts_with(&format!("{sf}:{line}: `setup[1].model.token-budget`: expected at least 1 token"))
            && msg.ends_with("(setup \"trtllm-0.17-fp8-offline\", for row throughput.csv:2)"),
        "{msg}"
    );
    let (msg, line) = e("= \"h200\"", "= \"h200q\"", &first);
    assert!(msg.starts_with(&format!("{sf}:{line}: `setup[1].gpus`: unknown gpu \"h200q\"")), "{msg}");
    // A server too small for the row's lengths: the row's line, with the setup named.
    let long = table.lines().position(|l| l.contains(",20000,2000,")).unwrap();
    let two = format!("{}\n{}", table.lines().next().unwrap(), table.lines().nth(long).unwrap());
    let (msg, _) = e("memory-utilization = 0.95", "memory-utilization = 0.01", &two);
    assert!(msg.starts_with("throughput.csv:2: setup \"trtllm-0.17-fp8-offline\": `prompt-tokens`:"), "{msg}");
}
