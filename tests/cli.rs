//! The `marill` binary on bad input: one clear `error:` line naming the problem, a non-zero exit,
//! never a panic trace.

use std::path::Path;
use std::process::Command;

fn marill(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails unless the command failed with exactly one `error:` line mentioning every `needle`.
fn assert_one_line_error(args: &[&str], needles: &[&str]) {
    let (ok, _, stderr) = marill(args);
    assert!(!ok, "{args:?} should fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: `{needle}` not in: {}",
            lines[0]
        );
    }
}

fn tiny_model(dir: &Path) -> String {
    marill::model::tiny::write_tiny_model(dir, &marill::model::LlamaConfig::tiny(), 1).unwrap();
    dir.to_str().unwrap().to_string()
}

#[test]
fn missing_model_file() {
    assert_one_line_error(
        &["inspect", "no/such/model.gguf"],
        &["no/such/model.gguf", "no such model"],
    );
}

#[test]
fn corrupt_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF but not really").unwrap();
    let p = path.to_str().unwrap();
    assert_one_line_error(&["inspect", p], &[p, "not a valid GGUF file"]);
    let dir2 = tempfile::tempdir().unwrap();
    let model = tiny_model(dir2.path());
    std::fs::write(dir2.path().join("model.safetensors"), b"garbage").unwrap();
    assert_one_line_error(
        &["inspect", &model],
        &["model.safetensors", "not a valid safetensors"],
    );
}

#[test]
fn model_missing_from_the_hub_cache() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(["inspect", "SomeOrg/NoSuchModel"])
        .env("HF_HOME", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SomeOrg/NoSuchModel") && stderr.contains("not in the Hugging Face cache"),
        "{stderr}"
    );
}

#[test]
fn unknown_task() {
    assert_one_line_error(&["eval", "--task", "sst3"], &["sst3", "sst2"]);
}

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rows.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"sentence\": \"fine\", \"label\": \"positive\"}\n{\"id\": \"b\", \"sentence\": \"bad\"\n",
    )
    .unwrap();
    let model = tiny_model(&dir.path().join("m"));
    let d = data.to_str().unwrap();
    assert_one_line_error(
        &["eval", "--model", &model, "--task", "sst2", "--data", d],
        &[&format!("{d}:2"), "not valid JSON"],
    );
}

#[test]
fn bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    assert_one_line_error(
        &[
            "eval", "--model", &model, "--task", "sst2", "--batch", "0", "--limit", "2",
        ],
        &["--batch"],
    );
    assert_one_line_error(
        &["bench", "mpc", "--protocol", "2pc-dealer", "--runs", "0"],
        &["--runs"],
    );
}

#[test]
fn eval_on_a_tiny_model_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"));
    let json = dir.path().join("report.json");
    let (ok, stdout, stderr) = marill(&[
        "eval",
        "--model",
        &model,
        "--task",
        "sst2",
        "--limit",
        "6",
        "--batch",
        "4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["task"], "sst2");
    assert_eq!(report["n"], 6);
    assert_eq!(report["mode"], "plaintext");
    assert_eq!(report["model"], model.as_str());
    let accuracy = report["accuracy"].as_f64().unwrap();
    let correct = report["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["correct"] == true)
        .count();
    assert_eq!(accuracy, correct as f64 / 6.0);
}

/// Writes a tiny student checkpoint over the tiny base model in `dir/base`, recording
/// `base_sha256` as its base model's hash.
fn tiny_student(dir: &Path, base_sha256: &str) -> String {
    use marill::checkpoint::{LoraInfo, TaskInfo};
    use marill::model::lora_target::LoraTarget;
    use marill::model::marill::{LoraSpec, MarillArch, attach_lora};
    use marill::train::export::{ExportContext, export_student};
    use rand::SeedableRng;
    let base = tiny_model(&dir.join("base"));
    let source = marill::model::ModelSource::parse(&base).unwrap();
    let mut model = marill::model::load(&source, &candle_core::Device::Cpu)
        .unwrap()
        .model;
    let arch = MarillArch {
        public_layers: 1,
        head_merge: 3,
        ..MarillArch::standard()
    };
    arch.apply(&mut model).unwrap();
    let spec = LoraSpec {
        rank: 2,
        alpha: 4.0,
        targets: vec![LoraTarget::Q, LoraTarget::Down],
        dropout: 0.0,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let private = arch.private_layers(&model);
    attach_lora(&mut model, private, &spec, &Default::default(), &mut rng).unwrap();
    let ctx = ExportContext {
        base_source: &base,
        base_sha256,
        task: TaskInfo {
            name: marill::data::TaskKind::Sst2,
            format: Default::default(),
            max_len: 512,
            max_new_tokens: None,
        },
        recipe_sha256: "0",
    };
    let lora = LoraInfo {
        rank: 2,
        alpha: 4.0,
        targets: spec.targets.clone(),
    };
    let out = dir.join("student");
    export_student(&out, &ctx, &model, &arch, lora, serde_json::json!({})).unwrap();
    out.to_str().unwrap().to_string()
}

#[test]
fn a_checkpoint_loads_over_its_base_model_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let base_files = [dir.path().join("base/model.safetensors")];
    tiny_model(&dir.path().join("base"));
    let sha = marill::checkpoint::BaseModel::weights_sha256(&base_files).unwrap();
    let good = tiny_student(dir.path(), &sha);
    let (ok, stdout, stderr) =
        marill(&["eval", "--model", &good, "--task", "sst2", "--limit", "3"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    let (ok, stdout, _) = marill(&["inspect", &good]);
    assert!(ok && stdout.contains("private layers: 1..4"), "{stdout}");

    let other = tempfile::tempdir().unwrap();
    let bad = tiny_student(other.path(), &"0".repeat(64));
    assert_one_line_error(
        &["eval", "--model", &bad, "--task", "sst2", "--limit", "3"],
        &["sha256", "does not match"],
    );
}

/// 1,000 inverted bytes of tensor data still parse as safetensors: only the manifest's sha256
/// of the private file tells, and every command that reads it refuses it in one line.
#[test]
fn a_checkpoint_with_corrupt_private_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(&dir.path().join("base"));
    let sha =
        marill::checkpoint::BaseModel::weights_sha256(&[dir.path().join("base/model.safetensors")])
            .unwrap();
    let ckpt = tiny_student(dir.path(), &sha);
    let private = Path::new(&ckpt).join("private.safetensors");
    let mut bytes = std::fs::read(&private).unwrap();
    let start = bytes.len() - 1000;
    bytes[start..].iter_mut().for_each(|b| *b = !*b);
    std::fs::write(&private, bytes).unwrap();
    let p = private.to_str().unwrap();
    let refused = [p, "does not match the manifest's private_sha256"];
    assert_one_line_error(
        &["eval", "--model", &ckpt, "--task", "sst2", "--limit", "3"],
        &refused,
    );
    assert_one_line_error(&["inspect", &ckpt], &refused);
    let run = dir.path().to_str().unwrap();
    let out = dir.path().join("exported");
    assert_one_line_error(&["export", run, "--out", out.to_str().unwrap()], &refused);
    assert!(!out.join("student").exists());
}

/// A small valid recipe over the base model `base`.
fn recipe_on(base: &str) -> String {
    format!(
        "[model]\nbase = \"{base}\"\n[task]\nname = \"sst2\"\n\
         [teacher]\nmethod = \"lora\"\nepochs = 1\nlr = 1e-3\nbatch = 8\n\
         [student]\npublic_layers = 2\nepochs = 1\nlr = 1e-3\nbatch = 8\n"
    )
}

#[test]
fn bad_recipes_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[task]\nname = \"sst2\"\nmax_lne = 64\n").unwrap();
    let t = typo.to_str().unwrap();
    assert_one_line_error(&["train", t], &[t, "max_lne"]);
    let merge = dir.path().join("merge.toml");
    let base = tiny_model(&dir.path().join("base"));
    let recipe = recipe_on(&base);
    std::fs::write(
        &merge,
        format!("{recipe}[student.head_merge]\nfactor = 4\n"),
    )
    .unwrap();
    let m = merge.to_str().unwrap();
    assert_one_line_error(
        &[
            "train",
            m,
            "--out",
            dir.path().join("run").to_str().unwrap(),
        ],
        &[m, "head_merge"],
    );
}

#[test]
fn a_file_that_is_not_a_model_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a model").unwrap();
    let n = notes.to_str().unwrap();
    assert_one_line_error(&["inspect", n], &[n, "exists but is not a model", ".gguf"]);
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, recipe_on(n)).unwrap();
    let r = recipe.to_str().unwrap();
    let out = dir.path().join("run");
    assert_one_line_error(
        &["train", r, "--out", out.to_str().unwrap()],
        &[r, "model.base", n, "exists but is not a model"],
    );
}

#[test]
fn a_rope_the_decoder_does_not_implement_is_refused_naming_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("rope_theta");
    config["rope_parameters"] =
        serde_json::json!({"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0});
    std::fs::write(&path, config.to_string()).unwrap();
    assert_one_line_error(
        &["inspect", &model],
        &[
            "config.json",
            "rope_parameters.rope_type",
            "llama3",
            "not supported",
        ],
    );
}

#[test]
fn argument_errors_name_what_is_missing_or_wrong_on_one_line() {
    assert_one_line_error(
        &["eval"],
        &["required arguments were not provided", "--task <TASK>"],
    );
    assert_one_line_error(&["party"], &["--role <ROLE>, --listen <LISTEN>"]);
    assert_one_line_error(&[], &["requires a subcommand", "eval", "party"]);
    assert_one_line_error(
        &["bench"],
        &["requires a subcommand", "mpc, train, forward"],
    );
    assert_one_line_error(
        &["train", "r.toml", "--stage", "both"],
        &["'both'", "--stage", "teacher, student, all"],
    );
    let (ok, stdout, _) = marill(&["--version"]);
    assert!(ok && stdout.starts_with("marill "), "{stdout}");
    let (ok, stdout, _) = marill(&["eval", "--help"]);
    assert!(ok && stdout.contains("--task <TASK>"), "{stdout}");
}

#[test]
fn nothing_to_evaluate_is_an_error_not_an_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"));
    assert_one_line_error(
        &["eval", "--model", &model, "--task", "sst2", "--limit", "0"],
        &["--limit must be at least 1"],
    );
    let root = dir.path().join("datasets");
    std::fs::create_dir_all(root.join("sst2")).unwrap();
    std::fs::write(
        root.join("sst2/data.jsonl"),
        "{\"id\": \"a\", \"sentence\": \"fine\", \"label\": \"positive\"}\n",
    )
    .unwrap();
    let r = root.to_str().unwrap();
    assert_one_line_error(
        &["eval", "--model", &model, "--task", "sst2", "--datasets", r],
        &["sst2/data.jsonl", "test split has no rows"],
    );
}

#[test]
fn an_unwritable_json_path_fails_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let json = missing.join("report.json");
    let j = json.to_str().unwrap();
    // The path is checked first: before the data, the model or the benchmark.
    let needles = ["--json", j, "does not exist"];
    assert_one_line_error(
        &[
            "eval",
            "--model",
            "no/such.gguf",
            "--task",
            "sst2",
            "--json",
            j,
        ],
        &needles,
    );
    assert_one_line_error(&["bench", "mpc", "--runs", "1", "--json", j], &needles);
    assert_one_line_error(
        &["bench", "forward", "--model", "no/such.gguf", "--json", j],
        &needles,
    );
    assert!(!missing.exists());
    assert_one_line_error(
        &["eval", "--task", "sst2", "--json", "/proc/x"],
        &["--json /proc/x", "cannot create a file in /proc"],
    );
    let d = dir.path().to_str().unwrap();
    assert_one_line_error(
        &["bench", "train", "--json", d],
        &["--json", d, "not a regular file"],
    );
}

/// Runs `args` with stdout a pipe whose reading end is already closed (a `| head` that has
/// exited); returns whether it succeeded and its stderr.
fn marill_into_a_closed_pipe(args: &[&str]) -> (bool, String) {
    let (read, write) = std::io::pipe().unwrap();
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(write)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn printing_into_a_closed_pipe_is_quiet_and_loses_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"));
    let json = dir.path().join("report.json");
    let j = json.to_str().unwrap();
    for args in [
        vec!["inspect", &model],
        vec![
            "eval", "--model", &model, "--task", "sst2", "--limit", "2", "--json", j,
        ],
    ] {
        let (ok, stderr) = marill_into_a_closed_pipe(&args);
        assert!(ok && stderr.is_empty(), "{args:?}: {stderr}");
    }
    // The summary went nowhere; the report written after it is complete.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["n"], 2);
}

/// `marill generate` on bad input: an empty prompt, no new tokens, a prompt and answer beyond
/// the model's positions, a checkpoint trained for a choice task (also asked of `eval` on a
/// generation task); and under MPC on a good one it prints the text and the costs.
#[test]
fn generate_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(&dir.path().join("base"));
    let sha =
        marill::checkpoint::BaseModel::weights_sha256(&[dir.path().join("base/model.safetensors")])
            .unwrap();
    let student = tiny_student(dir.path(), &sha);
    let generate = |model: &str, prompt: &str, new: &str| {
        [
            "generate",
            "--model",
            model,
            "--prompt",
            prompt,
            "--max-new-tokens",
            new,
            "--mode",
            "mpc",
        ]
        .map(str::to_string)
    };
    let check = |args: [String; 9], needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_line_error(&args, needles);
    };
    check(generate(&base, " ", "3"), &["--prompt is empty"]);
    check(
        generate(&base, "a b", "0"),
        &["--max-new-tokens must be at least 1"],
    );
    check(
        generate(&base, "a b", "1023"),
        &["new ones exceed the model's 1024 positions"],
    );
    check(
        generate(&student, "a b", "3"),
        &[&student, "serves sst2, a choice task, not generation"],
    );
    assert_one_line_error(
        &[
            "eval",
            "--model",
            &student,
            "--task",
            "arithmetic-gen",
            "--mode",
            "mpc",
            "--limit",
            "1",
        ],
        &["serves sst2, a choice task, not generation"],
    );
    let args = generate(&base, "a b c", "3");
    let (ok, stdout, stderr) = marill(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(!stdout.trim().is_empty(), "no text");
    assert!(
        stderr.contains("prefill:") && stderr.contains("per token:"),
        "{stderr}"
    );
}

/// A generation task under MPC over TCP (parties started on loopback) reports what the memory
/// transport does: the same plaintext answers, agreement with them, prefill and per-token
/// costs.
#[test]
fn generation_under_mpc_over_tcp_reports_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(&dir.path().join("base"));
    let report = |transport: &str| {
        let json = dir.path().join(format!("{transport}.json"));
        let (ok, stdout, stderr) = marill(&[
            "eval",
            "--model",
            &base,
            "--task",
            "arithmetic-gen",
            "--mode",
            "mpc",
            "--limit",
            "3",
            "--max-new-tokens",
            "3",
            "--batch",
            "2",
            "--reference",
            "--transport",
            transport,
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(ok, "{transport}: {stderr}");
        assert!(stdout.contains("per token"), "{stdout}");
        let text = std::fs::read_to_string(&json).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let (memory, tcp) = (report("memory"), report("tcp"));
    for r in [&memory, &tcp] {
        assert_eq!(r["n"], 3);
        assert!(r["token_agreement"].as_f64().unwrap() > 0.5, "{r}");
        assert!(r["per_token"]["rounds"].as_f64().unwrap() > 0.0);
        assert!(r["prefill"]["online_bytes"].as_f64().unwrap() > 0.0);
    }
    let answers = |r: &serde_json::Value| -> Vec<String> {
        r["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["plaintext"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(answers(&memory), answers(&tcp));
}

#[test]
fn a_code_task_runs_its_tests_only_with_execute_code() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"));
    let data = dir.path().join("code.jsonl");
    let row = serde_json::json!({
        "id": "add",
        "prompt": "def add(a, b):\n",
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "canonical_solution": "    return a + b\n",
    });
    std::fs::write(&data, format!("{row}\n")).unwrap();
    let data = data.to_str().unwrap();
    let args = [
        "eval",
        "--model",
        &model,
        "--task",
        "humaneval",
        "--data",
        data,
        "--max-new-tokens",
        "4",
    ];
    assert_one_line_error(&args, &["humaneval", "--execute-code"]);
    let json = dir.path().join("report.json");
    let mut with = args.to_vec();
    with.extend(["--execute-code", "--json", json.to_str().unwrap()]);
    let (ok, _, stderr) = marill(&with);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["n"], 1);
    // Four tokens of an untrained model are not `return a + b`.
    assert_eq!(report["predictions"][0]["correct"], false);
}
