//! `marill run` end to end on a tiny random model: recipe → teacher and student training →
//! split checkpoints → evaluation under both MPC protocols, which must agree with plaintext.

use std::process::Command;

fn marill(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(args)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn train_export_and_evaluate_under_mpc() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    marill::model::tiny::write_tiny_model(&base, &marill::model::LlamaConfig::tiny(), 3).unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"[model]
base = "{}"
[task]
name = "sst2"
max_len = 400
[teacher]
method = "lora"
rank = 4
epochs = 1
lr = 3e-3
batch = 16
[student]
public_layers = 1
epochs = 1
lr = 3e-3
batch = 16
[student.lora]
rank = 4
[student.head_merge]
factor = 3
[optimizer]
eval_interval = 0
"#,
            base.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let out = marill(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--mpc-rows",
        "6",
    ]);
    assert!(out.contains("communication ×"), "{out}");
    for kind in ["teacher", "student"] {
        assert!(
            run.join(kind).join("manifest.json").is_file(),
            "{kind} checkpoint"
        );
    }
    assert!(run.join("report.md").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    for kind in ["teacher", "student"] {
        let mpc = report[kind]["mpc"].as_array().unwrap();
        assert_eq!(mpc.len(), 2, "both protocols");
        for r in mpc {
            assert_eq!(r["n"], 6);
            // A random tiny model has near-tied choices on some rows; fixed-point error may
            // flip at most one of six.
            let agreement = r["agreement"].as_f64().unwrap();
            assert!(
                agreement >= 5.0 / 6.0,
                "{kind} {}: agreement {agreement}",
                r["protocol"]
            );
            assert!(r["cost_per_example"]["online_bytes"].as_f64().unwrap() > 0.0);
        }
    }
    // The student runs fewer layers under MPC than the teacher.
    let bytes = |kind: &str| {
        report[kind]["mpc"][0]["cost_per_example"]["online_bytes"]
            .as_f64()
            .unwrap()
    };
    assert!(bytes("student") < bytes("teacher"));
}
