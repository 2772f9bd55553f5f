//! `marill train` on a tiny random model in a project of its own, run from an unrelated working
//! directory: the recipe's relative paths resolve against its project, the stages trained apart
//! give the very student the stages trained together do, and a changed recipe is not resumed.

use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A project directory (`datasets/sst2`, `models/tiny`, `recipes/tiny.toml`) and an empty
/// working directory to run from.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cwd: PathBuf,
    recipe: PathBuf,
}

/// The tiny recipe: the base given relative to the project; teacher and student adapters of
/// the same rank, so the student starts from the teacher's; the student's dropout and the
/// hidden-state loss on, so every source of randomness and every teacher output is used.
const RECIPE: &str = r#"[model]
base = "models/tiny"
[task]
name = "sst2"
max_len = 400
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
dropout = 0.1
[student.head_merge]
factor = 3
[student.distill]
w_hidden = 0.5
[optimizer]
eval_interval = 0
"#;

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("project");
        let cwd = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&cwd).unwrap();
        // A slice of the repository's sst2 rows keeps training to seconds.
        let rows = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sst2/data.jsonl"),
        )
        .unwrap();
        let slice: String = rows.lines().take(120).map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(root.join("datasets/sst2")).unwrap();
        std::fs::write(root.join("datasets/sst2/data.jsonl"), slice).unwrap();
        marill::model::tiny::write_tiny_model(
            &root.join("models/tiny"),
            &marill::model::LlamaConfig::tiny(),
            3,
        )
        .unwrap();
        let recipe = root.join("recipes/tiny.toml");
        std::fs::create_dir_all(recipe.parent().unwrap()).unwrap();
        std::fs::write(&recipe, RECIPE).unwrap();
        Project {
            _tmp: tmp,
            root,
            cwd,
            recipe,
        }
    }

    /// `marill train <recipe> args...` from the unrelated working directory: success and stderr.
    fn train(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_marill"))
            .current_dir(&self.cwd)
            .arg("train")
            .arg(&self.recipe)
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn train_ok(&self, args: &[&str]) {
        let (ok, stderr) = self.train(args);
        assert!(ok, "train {args:?}: {stderr}");
    }

    fn edit_recipe(&self, old: &str, new: &str) {
        let text = std::fs::read_to_string(&self.recipe).unwrap();
        assert!(text.contains(old), "{old}");
        std::fs::write(&self.recipe, text.replacen(old, new, 1)).unwrap();
    }
}

fn tensors(checkpoint: &Path) -> HashMap<String, Tensor> {
    marill::checkpoint::read_checkpoint(checkpoint).unwrap().1
}

fn values(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

fn student_report(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("train_report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let student = &report["student"];
    serde_json::json!({
        "steps": student["outcome"]["steps"],
        "best_val_accuracy": student["outcome"]["best_val_accuracy"],
        "test_accuracy": student["test_accuracy"],
    })
}

#[test]
fn paths_resolve_against_the_project_and_stages_apart_train_the_same_student() {
    let p = Project::new();
    // No --out: the run goes to the project's runs/, not the working directory's.
    p.train_ok(&[]);
    let together = p.root.join("runs/tiny");
    assert!(together.join("student/manifest.json").is_file());
    assert!(std::fs::read_dir(&p.cwd).unwrap().next().is_none());
    // The checkpoint names its base so that it loads from any working directory.
    let manifest = marill::checkpoint::read_checkpoint(&together.join("student"))
        .unwrap()
        .0;
    assert_eq!(
        Path::new(&manifest.base.source),
        std::path::absolute(p.root.join("models/tiny")).unwrap()
    );

    let apart = p.root.join("apart");
    let out = apart.to_str().unwrap();
    p.train_ok(&["--out", out, "--stage", "teacher"]);
    assert!(!apart.join("student").exists());
    p.train_ok(&["--out", out, "--stage", "student"]);
    let (a, b) = (
        tensors(&together.join("student")),
        tensors(&apart.join("student")),
    );
    assert!(!a.is_empty());
    let mut names: Vec<&String> = a.keys().collect();
    names.sort();
    assert_eq!(names, {
        let mut n: Vec<&String> = b.keys().collect();
        n.sort();
        n
    });
    for name in names {
        assert_eq!(values(&a[name]), values(&b[name]), "{name}");
    }
    assert_eq!(student_report(&together), student_report(&apart));
}

#[test]
fn resuming_under_a_changed_recipe_is_refused_naming_the_section() {
    let p = Project::new();
    let run = p.root.join("run");
    let out = run.to_str().unwrap();
    p.train_ok(&["--out", out]);
    // Layout and comments are not the recipe: resuming a finished run is a no-op.
    p.edit_recipe("[student]\n", "# tuned below\n[student]\n");
    p.train_ok(&["--out", out, "--resume"]);

    p.edit_recipe(
        "epochs = 1\nlr = 3e-3\nbatch = 8\n[student.lora]",
        "epochs = 2\nlr = 3e-3\nbatch = 8\n[student.lora]",
    );
    let (ok, stderr) = p.train(&["--out", out, "--resume"]);
    assert!(!ok);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let recipe = p.recipe.display().to_string();
    let recorded = run.join("state/student.recipe.toml").display().to_string();
    for needle in [recipe.as_str(), "[student]", recorded.as_str(), "--resume"] {
        assert!(errors[0].contains(needle), "{needle} missing: {stderr}");
    }
    assert!(!errors[0].contains("[teacher]"), "{stderr}");
    // The teacher does not depend on [student]: its stage resumes.
    p.train_ok(&["--out", out, "--resume", "--stage", "teacher"]);

    p.edit_recipe("lr = 3e-3", "lr = 1e-3");
    let (ok, stderr) = p.train(&["--out", out, "--resume", "--stage", "teacher"]);
    assert!(!ok);
    assert!(stderr.contains("[teacher]"), "{stderr}");
    // Without --resume the changed recipe trains afresh.
    p.train_ok(&["--out", out, "--stage", "teacher"]);
}
