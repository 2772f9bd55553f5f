//! `marill train` on a generation task (arithmetic-gen) with a tiny random model: teacher and
//! student train, validate by greedy decoding and report test exact match; bad input (a row
//! without its answer, a prompt that does not fit with its answer, `top_k` 0 or over the
//! vocabulary) is one error line and a non-zero exit. `marill run` on the same recipe decodes
//! both checkpoints under both protocols and reports prefill and per-token costs.

use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPE: &str = r#"[model]
base = "models/tiny"
[task]
name = "arithmetic-gen"
max_len = 48
[teacher]
method = "lora"
rank = 4
epochs = 1
lr = 3e-3
batch = 8
[student]
public_layers = 1
epochs = 1
lr = 3e-3
batch = 8
[student.lora]
rank = 4
[student.head_merge]
factor = 3
[student.distill]
w_hidden = 0.5
top_k = 16
[optimizer]
eval_interval = 0
"#;

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    recipe: PathBuf,
}

impl Project {
    /// `rows` lines of the repository's arithmetic rows, the tiny model, and `recipe`.
    fn new(rows: usize, recipe: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let all = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/arithmetic/data.jsonl"),
        )
        .unwrap();
        let slice: String = all.lines().take(rows).map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(root.join("datasets/arithmetic")).unwrap();
        std::fs::write(root.join("datasets/arithmetic/data.jsonl"), slice).unwrap();
        marill::model::tiny::write_tiny_model(
            &root.join("models/tiny"),
            &marill::model::LlamaConfig::tiny(),
            3,
        )
        .unwrap();
        let path = root.join("recipes/tiny-gen.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, recipe).unwrap();
        Project {
            _tmp: tmp,
            root,
            recipe: path,
        }
    }

    fn train(&self) -> (bool, String) {
        self.marill(&["train"])
    }

    /// `marill COMMAND… RECIPE`: whether it succeeded, and its stderr.
    fn marill(&self, command: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_marill"))
            .args(command)
            .arg(&self.recipe)
            .output()
            .expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Trains expecting failure: the one error line.
    fn train_error(&self) -> String {
        let (ok, stderr) = self.train();
        assert!(!ok, "should fail: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].starts_with("error: "), "{stderr}");
        errors[0].to_string()
    }
}

#[test]
fn teacher_and_student_train_on_a_generation_task() {
    let p = Project::new(60, RECIPE);
    let (ok, stderr) = p.train();
    assert!(ok, "{stderr}");
    let run = p.root.join("runs/tiny-gen");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train_report.json")).unwrap())
            .unwrap();
    for stage in ["teacher", "student"] {
        let accuracy = report[stage]["test_accuracy"].as_f64().expect(stage);
        assert!((0.0..=1.0).contains(&accuracy), "{stage}: {accuracy}");
        assert!(report[stage]["outcome"]["steps"].as_u64().unwrap() > 0);
        // The checkpoint records the generation task, for eval to check against.
        let (manifest, _) = marill::checkpoint::read_checkpoint(&run.join(stage)).unwrap();
        assert_eq!(manifest.task.name, marill::data::TaskKind::ArithmeticGen);
    }
    // Validation ran (by decoding) for both stages, and both learned something: the loss of
    // the last step is below the first's.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for stage in ["teacher", "student"] {
        let of_stage: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["stage"] == stage).collect();
        assert!(
            of_stage.iter().any(|l| l["val_accuracy"].is_f64()),
            "{stage}"
        );
        let losses: Vec<f64> = of_stage.iter().filter_map(|l| l["loss"].as_f64()).collect();
        assert!(losses.last() < losses.first(), "{stage}: {losses:?}");
    }
}

#[test]
fn bad_generation_input_is_one_error_line() {
    // A top_k of 0, or over the tiny vocabulary of 320 tokens.
    let zero = Project::new(20, &RECIPE.replace("top_k = 16", "top_k = 0"));
    assert!(zero.train_error().contains("student.distill.top_k"));
    let huge = Project::new(20, &RECIPE.replace("top_k = 16", "top_k = 321"));
    let message = huge.train_error();
    assert!(
        message.contains("top_k = 321") && message.contains("320"),
        "{message}"
    );
    // A prompt that does not fit max_len with its answer.
    let short = Project::new(20, &RECIPE.replace("max_len = 48", "max_len = 12"));
    let message = short.train_error();
    assert!(message.contains("task.max_len = 12"), "{message}");
    // A row without its answer field names the file, the line and the field.
    let missing = Project::new(20, RECIPE);
    let data = missing.root.join("datasets/arithmetic/data.jsonl");
    let rows = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = rows.lines().map(String::from).collect();
    lines[2] = lines[2].replace(r#", "answer": "#, r#", "gold": "#);
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let message = missing.train_error();
    assert!(
        message.contains("data.jsonl") && message.contains("answer"),
        "{message}"
    );
}

/// `marill run` on a generation recipe: both checkpoints decoded under both protocols, the
/// decoding budget the longest training answer as the manifest records it, MPC decoding equal
/// to plaintext greedy decoding, and the student cheaper than the teacher per token and for
/// the prefill (one of its four layers is public, its LoRA unmerged).
#[test]
fn run_on_a_generation_recipe_reports_prefill_and_per_token_costs() {
    let p = Project::new(60, RECIPE);
    let (ok, stderr) = p.marill(&["run", "--mpc-rows", "3", "--batch", "2"]);
    assert!(ok, "{stderr}");
    let run = p.root.join("runs/tiny-gen");
    let (manifest, _) = marill::checkpoint::read_checkpoint(&run.join("student")).unwrap();
    // Room for the longest training answer and its end token: a few digits on the tiny
    // tokenizer's bytes, not the 256 of a checkpoint that does not say.
    let budget = manifest.task.max_new_tokens.expect("recorded");
    assert!((2..=8).contains(&budget), "{budget}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["mpc_rows"], 3);
    let cost = |stage: &str, i: usize, phase: &str| {
        report[stage]["mpc"][i][phase]["online_bytes"]
            .as_f64()
            .unwrap()
    };
    for stage in ["teacher", "student"] {
        let evals = report[stage]["mpc"].as_array().unwrap();
        let protocols: Vec<&str> = evals
            .iter()
            .map(|e| e["protocol"].as_str().unwrap())
            .collect();
        assert_eq!(protocols, ["2pc-dealer", "3pc"], "{stage}");
        for e in evals {
            assert_eq!(e["n"], 3);
            assert_eq!(e["max_new_tokens"].as_u64().unwrap() as usize, budget);
            assert_eq!(e["token_agreement"], 1.0, "{stage}: {e}");
            assert_eq!(e["accuracy"], e["plaintext_accuracy"], "{stage}");
        }
    }
    for i in 0..2 {
        for phase in ["prefill", "per_token"] {
            assert!(
                cost("teacher", i, phase) > cost("student", i, phase),
                "{phase} {i}: {} vs {}",
                cost("teacher", i, phase),
                cost("student", i, phase)
            );
        }
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("per token: communication ×"), "{md}");
    assert!(md.contains("| student | 3pc |"), "{md}");
}
