//! The driver up to the `autolora` binary: the shipped plans and patterns, the units and
//! their commands, and a whole run against a fake binary that writes what the CLI writes.

use super::*;

/// MiniLM's 36 linear modules in model order.
fn minilm_modules() -> Vec<String> {
    let roles = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];
    (0..6)
        .flat_map(|l| roles.map(|r| format!("encoder.layer.{l}.{r}")))
        .collect()
}

fn ranks_of(pattern: &Pattern) -> Vec<(String, usize)> {
    pattern
        .ranks
        .iter()
        .filter(|(_, r)| **r > 0)
        .map(|(n, r)| {
            (
                n.strip_prefix("encoder.layer.").unwrap_or(n).to_string(),
                *r,
            )
        })
        .collect()
}

#[test]
fn the_shipped_plans_and_patterns_parse() -> Result<()> {
    let root = provision::repo_root();
    let modules = minilm_modules();
    let names: Vec<&str> = modules.iter().map(String::as_str).collect();
    for file in [PLAN, QUICK_PLAN] {
        let plan = Plan::load(&root.join(file))?;
        plan.check_files(&root)?;
        assert_eq!(plan.k(&root)?, 8, "{file}");
        assert!(!plan.units().is_empty());
        for path in &plan.patterns {
            let pattern = Pattern::load(&root.join(path))?;
            assert!(pattern.unknown(&names).is_empty(), "{}", path.display());
        }
    }
    let quick = Plan::load(&root.join(QUICK_PLAN))?;
    assert_eq!(quick.pass_spearman, Some(0.4));
    assert_eq!(quick.gate_variant.as_deref(), Some("default"));
    assert_eq!((quick.seeds.len(), quick.rhos.as_slice()), (1, &[0.1][..]));
    assert!(quick.report.is_none() && quick.control.is_none());
    let settings = quick.settings(&root)?;
    assert_eq!(
        setting(&settings, "search.steps").and_then(|v| v.as_integer()),
        Some(300)
    );
    assert_eq!(
        setting(&settings, "task.planted.classes").and_then(|v| v.as_integer()),
        Some(64)
    );
    let full = Plan::load(&root.join(PLAN))?;
    assert_eq!(full.control.as_deref(), Some("default"));
    assert_eq!(full.patterns.len(), 3);
    // The quick check guards the full benchmark's default search, not a search of its own.
    let default = |plan: &Plan| plan.variant("default").map(|v| v.overrides.clone());
    assert_eq!(default(&quick), default(&full));
    assert!(
        quick.overrides.iter().all(|o| !o.starts_with("search.")),
        "the quick plan searches as the full one does: {:?}",
        quick.overrides
    );

    let load = |name: &str| Pattern::load(&root.join("xtask/recovery/patterns").join(name));
    let depth = load("depth.toml")?;
    let mut expected = vec![
        ("2.attention.output.dense".to_string(), 2),
        ("3.intermediate.dense".to_string(), 4),
        ("4.output.dense".to_string(), 8),
        ("5.output.dense".to_string(), 8),
    ];
    assert_eq!(ranks_of(&depth), expected);
    let kind = load("type.toml")?;
    assert_eq!(kind.ranks.len(), 12);
    for l in 0..6 {
        assert_eq!(
            kind.rank(&format!("encoder.layer.{l}.attention.self.value")),
            4
        );
        assert_eq!(
            kind.rank(&format!("encoder.layer.{l}.attention.output.dense")),
            2
        );
    }
    let q_not_v = load("q-not-v.toml")?;
    assert_eq!(q_not_v.ranks.len(), 6, "the two explicit zeros are listed");
    expected = vec![
        ("0.attention.self.key".to_string(), 2),
        ("1.attention.self.query".to_string(), 8),
        ("4.attention.self.value".to_string(), 8),
        ("5.intermediate.dense".to_string(), 4),
    ];
    assert_eq!(ranks_of(&q_not_v), expected);
    assert_eq!(q_not_v.ranks["encoder.layer.1.attention.self.value"], 0);
    assert_eq!(q_not_v.ranks["encoder.layer.4.attention.self.query"], 0);
    Ok(())
}

const PLAN_TEXT: &str = r#"
config = "base.toml"
patterns = ["patterns/two.toml"]
rhos = [0.05, 0.1]
seeds = [1, 2]
out_dir = "runs/rec"
report = "docs/results.md"
json = "docs/recovery.json"
overrides = ["train.steps=5"]
control = "a"

[[variant]]
name = "a"

[[variant]]
name = "b"
overrides = ["search.outer_lr=3e-4"]
"#;

fn plan_with(extra: &str) -> Result<Plan> {
    Plan::parse(&format!("{PLAN_TEXT}{extra}"))
}

#[test]
fn plans_that_would_collide_or_fight_the_driver_are_refused() {
    let refused = |text: &str, needle: &str| {
        let err = Plan::parse(text).expect_err(text);
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    };
    let swap = |from: &str, to: &str| PLAN_TEXT.replace(from, to);
    refused(
        &swap("\"train.steps=5\"", "\"train.ranks=4\""),
        "the driver sets `train.ranks`",
    );
    refused(
        &swap("\"search.outer_lr=3e-4\"", "\"search.budget_params=9\""),
        "the driver sets",
    );
    refused(
        &swap(
            "\"patterns/two.toml\"",
            "\"patterns/two.toml\", \"other/two.toml\"",
        ),
        "share the stem `two`",
    );
    refused(
        &swap("control = \"a\"", "control = \"c\""),
        "no variant named `c`",
    );
    refused(
        &swap("name = \"b\"", "name = \"uniform\""),
        "taken by another arm",
    );
    refused(
        &swap("name = \"b\"", "name = \"search-x\""),
        "taken by another arm",
    );
    refused(
        &swap("name = \"b\"", "name = \"a\""),
        "two variants are named `a`",
    );
    refused(
        &swap("rhos = [0.05, 0.1]", "rhos = [0.1, 0.1]"),
        "listed twice",
    );
    refused(&swap("rhos = [0.05, 0.1]", "rhos = [0.0]"), "> 0");
    refused(
        &swap("\"patterns/two.toml\"", "\"patterns/two.txt\""),
        "end in .toml",
    );
    refused(&swap("seeds = [1, 2]", "seeds = []"), "at least one");
    refused(&format!("{PLAN_TEXT}\nsurprise = 1\n"), "surprise");
    assert!(plan_with("").is_ok());
    // pass_spearman and gate_variant (top-level keys, so before the first table).
    let gated = |keys: &str| Plan::parse(&format!("{keys}\n{PLAN_TEXT}"));
    assert!(gated("pass_spearman = 0.5\ngate_variant = \"b\"").is_ok());
    assert!(gated("pass_spearman = 0.5").is_err());
    assert!(gated("pass_spearman = 0.5\ngate_variant = \"z\"").is_err());
}

#[test]
fn units_run_rho_by_rho_then_seed_by_seed_with_the_oracle_first_in_each_cell() -> Result<()> {
    let plan = plan_with("")?;
    let units = plan.units();
    let arms = [
        "oracle", "search-a", "a", "search-b", "b", "control", "uniform", "random",
    ];
    assert_eq!(units.len(), 2 * 2 * arms.len());
    let described: Vec<String> = units
        .iter()
        .map(|u| {
            format!(
                "{} {} {} {}",
                u.seed,
                u.pattern.stem,
                rho_label(u.rho),
                u.arm.label()
            )
        })
        .collect();
    let mut expected = Vec::new();
    for rho in ["0.05", "0.1"] {
        for seed in [1, 2] {
            expected.extend(arms.iter().map(|arm| format!("{seed} two {rho} {arm}")));
        }
    }
    assert_eq!(described, expected);
    // Without a control there is no control unit.
    let no_control = Plan::parse(&PLAN_TEXT.replace("control = \"a\"", ""))?;
    assert!(
        no_control
            .units()
            .iter()
            .all(|u| u.arm.label() != "control")
    );
    assert_eq!(no_control.units().len(), 2 * 2 * (arms.len() - 1));
    // Sweep seeds: every seed at the first rho, the sweep's at the others.
    let sweep =
        Plan::parse(&PLAN_TEXT.replace("seeds = [1, 2]", "seeds = [1, 2]\nsweep_seeds = [2]"))?;
    let cells: Vec<(String, u64)> = sweep
        .units()
        .iter()
        .filter(|u| u.arm.label() == "oracle")
        .map(|u| (rho_label(u.rho), u.seed))
        .collect();
    assert_eq!(
        cells,
        [("0.05".into(), 1), ("0.05".into(), 2), ("0.1".into(), 2)]
    );
    for bad in [
        "sweep_seeds = [3]",
        "sweep_seeds = []",
        "sweep_seeds = [1, 1]",
    ] {
        let text = PLAN_TEXT.replace("seeds = [1, 2]", &format!("seeds = [1, 2]\n{bad}"));
        assert!(Plan::parse(&text).is_err(), "{bad}");
    }
    Ok(())
}

fn oracle_record(unit: &Unit) -> Record {
    let mut record = Record::new(unit, Vec::new(), 1.0, "abc");
    record.planted = [
        ("m.0", 0, 10),
        ("m.1", 2, 10),
        ("m.2", 1, 20),
        ("m.3", 0, 20),
    ]
    .iter()
    .map(
        |&(name, planted_rank, params_per_rank)| records::PlantedModule {
            name: name.into(),
            planted_rank,
            params_per_rank,
        },
    )
    .collect();
    record.ranks = records::planted_allocation(&record.planted);
    record.lora_params = Some(40);
    record
}

#[test]
fn each_arm_gets_its_command() -> Result<()> {
    let plan = plan_with("")?;
    let root = Path::new("/repo");
    let units = plan.units();
    let oracle = oracle_record(&units[0]);
    let cell = root.join("runs/rec/two/rho-0.05/seed-1");
    let common = [
        "run.seed=1".to_string(),
        "train.steps=5".into(),
        "task.planted.pattern=\"/repo/patterns/two.toml\"".into(),
        "task.planted.rho=0.05".into(),
    ];
    let expect = |arm: &str, command: &str, tail: &[String]| -> Result<()> {
        let unit = units
            .iter()
            .find(|u| u.arm.label() == arm && u.seed == 1 && u.rho == 0.05)
            .expect("in the plan");
        let invocation = plan.invocation(root, unit, Some(&oracle))?;
        assert_eq!(invocation.subcommand, command, "{arm}");
        assert_eq!(invocation.dir, cell.join(arm));
        assert_eq!(&invocation.sets[..4], &common[..], "{arm}");
        assert_eq!(&invocation.sets[4..], tail, "{arm}");
        Ok(())
    };
    let s = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    expect(
        "oracle",
        "train",
        &s(&[
            "task.planted.shuffle=false",
            "train.ranks=\"/repo/patterns/two.toml\"",
        ]),
    )?;
    expect(
        "search-a",
        "search",
        &s(&["task.planted.shuffle=false", "search.budget_params=40"]),
    )?;
    expect(
        "search-b",
        "search",
        &s(&[
            "task.planted.shuffle=false",
            "search.outer_lr=3e-4",
            "search.budget_params=40",
        ]),
    )?;
    // No search folder here (as in a fresh checkout): the rank table written from the
    // search's record (the whole run below covers ranks.json).
    expect(
        "b",
        "train",
        &s(&[
            "task.planted.shuffle=false",
            "train.ranks=\"/repo/runs/rec/two/rho-0.05/seed-1/search-b/ranks.toml\"",
        ]),
    )?;
    expect(
        "control",
        "search",
        &s(&["task.planted.shuffle=true", "search.budget_params=40"]),
    )?;
    // 40 parameters at 60 per rank: r = 1.
    expect(
        "uniform",
        "train",
        &s(&["task.planted.shuffle=false", "train.ranks=1"]),
    )?;
    expect(
        "random",
        "train",
        &s(&[
            "task.planted.shuffle=false",
            "train.ranks=\"/repo/runs/rec/two/rho-0.05/seed-1/random-ranks.toml\"",
        ]),
    )?;
    // Every arm after the oracle needs the oracle's record.
    assert!(plan.invocation(root, &units[1], None).is_err());
    Ok(())
}

#[test]
fn random_allocations_spend_the_budget_and_differ_by_cell() -> Result<()> {
    let plan = plan_with("")?;
    let units = plan.units();
    let random: Vec<&Unit> = units.iter().filter(|u| u.arm.label() == "random").collect();
    let oracle = oracle_record(random[0]);
    let draws: Vec<Vec<usize>> = random
        .iter()
        .map(|u| {
            let ranks = plan.random_allocation(u, &oracle, 3)?;
            let names: Vec<&str> = ranks.iter().map(|r| r.0.as_str()).collect();
            assert_eq!(names, ["m.0", "m.1", "m.2", "m.3"]);
            Ok(ranks.into_iter().map(|r| r.1).collect())
        })
        .collect::<Result<_>>()?;
    for ranks in &draws {
        assert!(ranks.iter().all(|&r| r <= 3), "{ranks:?}");
        assert_eq!(records::allocation_params(&oracle.planted, ranks), 40);
    }
    assert_eq!(
        draws[0],
        plan.random_allocation(random[0], &oracle, 3)?
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>()
    );
    assert!(
        draws.iter().any(|d| d != &draws[0]),
        "four cells drew the same allocation: {draws:?}"
    );
    Ok(())
}

/// A stand-in for `autolora search|train`: writes planted.json, ranks.json (search) or
/// result.json (train) into `--out`, its arguments into `args.txt` there, and the run
/// directory into `invocations.txt` beside itself.
#[cfg(unix)]
const FAKE_CLI: &str = r#"#!/bin/bash
set -euo pipefail
command=$1; shift
out=""; sets=(); resume=0
while [ $# -gt 0 ]; do
  case "$1" in
    --config) shift 2 ;;
    --out) out=$2; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    --resume) resume=1; shift ;;
    *) echo "unexpected argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
printf '%s\n' "$command" "${sets[@]}" > "$out/args.txt"
if [ $resume = 1 ]; then echo "--resume" >> "$out/args.txt"; fi
echo "$out" >> "$(dirname "$0")/invocations.txt"
seed=0; rho=0; shuffle=false
for s in "${sets[@]}"; do
  case "$s" in
    run.seed=*) seed=${s#run.seed=} ;;
    task.planted.rho=*) rho=${s#task.planted.rho=} ;;
    task.planted.shuffle=*) shuffle=${s#task.planted.shuffle=} ;;
  esac
done
cat > "$out/planted.json" <<JSON
{"pattern":"two.toml","rho":$rho,"planted_params":40,"modules":[
 {"name":"m.0","planted_rank":0,"params_per_rank":10,"scale":0.0,"ratio":0.0},
 {"name":"m.1","planted_rank":2,"params_per_rank":10,"scale":1.0,"ratio":$rho},
 {"name":"m.2","planted_rank":1,"params_per_rank":20,"scale":1.0,"ratio":$rho},
 {"name":"m.3","planted_rank":0,"params_per_rank":20,"scale":0.0,"ratio":0.0}]}
JSON
if [ "$command" = search ]; then
  if [ "$shuffle" = true ]; then r=(1 1 1 1); else r=(0 3 1 0); fi
  cat > "$out/ranks.json" <<JSON
{"format_version":1,"k":3,"gate":"softmax","selection":{},"modules":[
 {"name":"m.0","rank":${r[0]},"kept":[],"weights":[],"uniformity":{"max_min_ratio":1.0,"entropy":1.0}},
 {"name":"m.1","rank":${r[1]},"kept":[],"weights":[],"uniformity":{"max_min_ratio":1.0,"entropy":1.0}},
 {"name":"m.2","rank":${r[2]},"kept":[],"weights":[],"uniformity":{"max_min_ratio":1.0,"entropy":1.0}},
 {"name":"m.3","rank":${r[3]},"kept":[],"weights":[],"uniformity":{"max_min_ratio":1.0,"entropy":1.0}}],
 "params_per_rank":{"m.0":10,"m.1":10,"m.2":20,"m.3":20}}
JSON
else
  case "$(basename "$out")" in
    oracle) kl=0.01 ;; uniform) kl=0.05 ;; random) kl=0.06 ;; *) kl=0.02 ;;
  esac
  cat > "$out/result.json" <<JSON
{"label":"x","scores":{"dev":{"kl":${kl}${seed}},"test":{"kl":${kl}${seed}5}},
 "trainable_params":1040,"lora_params":40,"train_seconds":0.5}
JSON
fi
"#;

#[cfg(unix)]
#[test]
fn a_whole_run_against_a_fake_cli_records_resumes_reports_and_gates() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("patterns"))?;
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(
        root.join("base.toml"),
        "[task]\nname = \"planted\"\n[task.planted]\nclasses = 8\n[lora]\nk = 3\n",
    )?;
    std::fs::write(
        root.join("patterns/two.toml"),
        "# two planted modules\n[ranks]\n\"m.1\" = 2\n\"m.2\" = 1\n\"m.3\" = 0\n",
    )?;
    let experiment_block =
        "# Results\n\n<!-- experiment:begin (x) -->\nexperiment table\n<!-- experiment:end -->\n";
    std::fs::write(root.join("docs/results.md"), experiment_block)?;
    let plan_path = root.join("plan.toml");
    std::fs::write(&plan_path, PLAN_TEXT)?;
    let cli = root.join("fake-autolora");
    std::fs::write(&cli, FAKE_CLI)?;
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755))?;
    // An interrupted unit: its directory holds checkpoints.
    let cell = root.join("runs/rec/two/rho-0.05/seed-1");
    std::fs::create_dir_all(cell.join("uniform/checkpoints"))?;

    run_in(root, &plan_path, &cli)?;
    let out = root.join("runs/rec");
    let invocations = || -> Result<usize> {
        Ok(std::fs::read_to_string(out.join("invocations.txt"))?
            .lines()
            .count())
    };
    assert_eq!(invocations()?, 32);
    let log = Log::load(&out.join(driver::LOG))?;
    assert_eq!(log.records.len(), 32);
    let args = |arm: &str| std::fs::read_to_string(cell.join(arm).join("args.txt"));
    assert!(
        args("uniform")?.ends_with("train.ranks=1\n--resume\n"),
        "{}",
        args("uniform")?
    );
    assert!(!args("oracle")?.contains("--resume"));
    assert!(args("control")?.contains("task.planted.shuffle=true\n"));

    // The records: the oracle keeps the teacher, the searches their budget, every unit its
    // allocation over all four modules.
    let get = |arm: &str| log.get("two", 0.05, 1, arm).expect("recorded");
    assert_eq!(get("oracle").planted.len(), 4);
    assert_eq!(get("oracle").lora_params, Some(40));
    assert_eq!(get("search-b").budget_params, Some(40));
    assert_eq!(get("b").ranks, get("search-b").ranks);
    assert_eq!(
        get("search-a")
            .ranks
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        [0, 3, 1, 0]
    );
    assert_eq!(
        get("uniform").ranks.iter().map(|r| r.1).collect::<Vec<_>>(),
        [1; 4]
    );
    assert_eq!(get("a").score("dev", "kl"), Some(0.021));
    let random = Pattern::load(&cell.join("random-ranks.toml"))?;
    let random_ranks: Vec<usize> = ["m.0", "m.1", "m.2", "m.3"]
        .iter()
        .map(|m| random.rank(m))
        .collect();
    assert_eq!(get("random").ranks_of(&get("oracle").planted), random_ranks);
    assert_eq!(
        records::allocation_params(&get("oracle").planted, &random_ranks),
        40
    );

    // The JSON rows: 4 cells x (oracle, a, b, control, uniform, random).
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/recovery.json"))?)?;
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 24);
    let row = |method: &str| {
        rows.iter()
            .find(|r| r["method"] == method && r["seed"] == 2 && r["rho"] == 0.1)
            .expect("a row")
    };
    assert_eq!(row("a")["spearman"], 1.0);
    assert_eq!(row("a")["kendall"], 1.0);
    assert_eq!(row("a")["false_positives"], 0);
    assert_eq!(row("a")["loss"], 0.022);
    assert_eq!(row("a")["test_loss"], 0.0225);
    assert!(row("control")["spearman"].is_null() && row("control")["loss"].is_null());
    assert_eq!(row("control")["false_positives"], 2);
    assert_eq!(row("control")["lora_params"], 60);
    assert_eq!(row("oracle")["planted_share"], 1.0);
    // Uniform rank 1: 30 of its 60 parameters sit on planted modules.
    assert_eq!(row("uniform")["planted_share"], 0.5);
    let mut keys: Vec<&String> = row("oracle")
        .as_object()
        .expect("an object")
        .keys()
        .collect();
    keys.sort_unstable();
    let mut expected = [
        "pattern",
        "rho",
        "seed",
        "method",
        "spearman",
        "kendall",
        "planted_share",
        "false_positives",
        "loss",
        "test_loss",
        "lora_params",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);

    // The report: its own block beside the experiment's.
    let md = std::fs::read_to_string(root.join("docs/results.md"))?;
    assert!(md.starts_with(experiment_block.trim_end()), "{md}");
    assert!(md.contains("<!-- recovery:begin") && md.contains("<!-- recovery:end -->"));
    assert!(
        md.contains("<!-- recovery:begin (generated by `cargo xtask recovery`; edits here are overwritten) -->\n## Planted-rank recovery"),
        "{md}"
    );
    assert!(md.contains("### Pattern `two`, rho 0.05"), "{md}");
    assert!(md.contains("Validity gate: **valid**"), "{md}");
    assert!(md.contains("mean Spearman undefined over 2 seeds"), "{md}");
    assert!(md.contains("`search.outer_lr=3e-4`"), "{md}");
    assert!(md.contains("`lora.k = 3`"), "{md}");
    assert!(
        !md.contains("task.planted.rho ="),
        "driver keys are not settings: {md}"
    );

    // A restart runs nothing; a lost last line reruns that unit alone.
    run_in(root, &plan_path, &cli)?;
    assert_eq!(invocations()?, 32);
    let log_text = std::fs::read_to_string(out.join(driver::LOG))?;
    let cut = log_text.trim_end().rfind('\n').expect("several lines") + 1;
    std::fs::write(out.join(driver::LOG), &log_text[..cut + 10])?;
    run_in(root, &plan_path, &cli)?;
    assert_eq!(invocations()?, 33);

    // A fresh checkout keeps the log, not the run folders: a retrain whose search is recorded
    // trains the search's recorded ranks, written beside it as a rank table.
    let log_text = std::fs::read_to_string(out.join(driver::LOG))?;
    let is_retrain_a = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).expect("a record");
        v["arm"] == "a" && v["seed"] == 1 && v["rho"] == 0.05
    };
    let kept: Vec<&str> = log_text.lines().filter(|l| !is_retrain_a(l)).collect();
    assert_eq!(kept.len(), log_text.lines().count() - 1);
    std::fs::write(out.join(driver::LOG), kept.join("\n") + "\n")?;
    std::fs::remove_dir_all(cell.join("search-a"))?;
    std::fs::remove_dir_all(cell.join("a"))?;
    run_in(root, &plan_path, &cli)?;
    assert_eq!(invocations()?, 34);
    assert!(args("a")?.contains("search-a/ranks.toml"), "{}", args("a")?);
    let table = Pattern::load(&cell.join("search-a/ranks.toml"))?;
    let relog = Log::load(&out.join(driver::LOG))?;
    let search_a = relog.get("two", 0.05, 1, "search-a").expect("recorded");
    for (name, rank) in &search_a.ranks {
        assert_eq!(table.rank(name), *rank, "{name}");
    }
    assert_eq!(
        relog.get("two", 0.05, 1, "a").expect("rerun").ranks,
        search_a.ranks
    );

    // A variant whose settings change is stale: its searches and retrains run again (4 cells x
    // 2 units), the old lines stay in the file, and the report reads the new ones.
    let lines = || -> Result<usize> {
        Ok(std::fs::read_to_string(out.join(driver::LOG))?
            .lines()
            .count())
    };
    let before = lines()?;
    std::fs::write(
        &plan_path,
        PLAN_TEXT.replace("search.outer_lr=3e-4", "search.outer_lr=1e-3"),
    )?;
    run_in(root, &plan_path, &cli)?;
    assert_eq!(invocations()?, 42);
    assert_eq!(lines()?, before + 8);
    assert!(
        args("search-b")?.contains("search.outer_lr=1e-3"),
        "{}",
        args("search-b")?
    );
    assert!(
        !args("search-b")?.contains("--resume"),
        "{}",
        args("search-b")?
    );
    let mut relog = Log::load(&out.join(driver::LOG))?;
    let plan = Plan::load(&plan_path)?;
    assert_eq!(relog.drop_stale(&plan).len(), 8);
    let search_b = relog.get("two", 0.05, 1, "search-b").expect("rerun");
    assert_eq!(search_b.settings, ["train.steps=5", "search.outer_lr=1e-3"]);
    let md = std::fs::read_to_string(root.join("docs/results.md"))?;
    assert!(
        md.contains("`search.outer_lr=1e-3`") && !md.contains("outer_lr=3e-4"),
        "{md}"
    );

    // The pass/fail check of a quick plan, over the same log.
    let gated = |pass: f64| -> Result<()> {
        std::fs::write(
            &plan_path,
            format!("pass_spearman = {pass:?}\ngate_variant = \"a\"\n{PLAN_TEXT}"),
        )?;
        run_in(root, &plan_path, &cli)
    };
    gated(0.5)?;
    let err = gated(1.5).unwrap_err();
    assert!(
        format!("{err:#}").contains("below pass_spearman = 1.5"),
        "{err:#}"
    );
    // The control's ranks are constant: gated on it, the check fails as undefined.
    let undefined = Plan::parse(&format!(
        "pass_spearman = 0.5\ngate_variant = \"a\"\n{PLAN_TEXT}"
    ))?;
    let mut control_only = Log::default();
    for record in &log.records {
        let mut record = record.clone();
        if record.arm == "control" {
            record.arm = "search-a".into();
        } else if record.arm == "search-a" {
            continue;
        }
        control_only.records.push(record);
    }
    let err = summary::check_pass(&undefined, &control_only).unwrap_err();
    assert!(format!("{err:#}").contains("undefined"), "{err:#}");
    Ok(())
}
