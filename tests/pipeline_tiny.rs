//! `marill run` end to end on a tiny random model: recipe → teacher and student training →
//! split checkpoints → evaluation under both MPC protocols, which must agree with plaintext.

use std::process::Command;

fn marill_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(args)
        .output()
        .expect("runs")
}

fn marill(args: &[&str]) -> String {
    let out = marill_output(args);
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

    check_tcp_transport(&run, &report, dir.path());
    check_private_head_refused(&run.join("student"), dir.path());
}

/// `eval --transport tcp` (server and dealer / helper as processes of their own) costs what the
/// in-memory run inside `marill run` cost on the same rows, and agrees with plaintext.
fn check_tcp_transport(run: &std::path::Path, report: &serde_json::Value, tmp: &std::path::Path) {
    let student = run.join("student");
    for (i, protocol) in ["2pc-dealer", "3pc"].into_iter().enumerate() {
        let json = tmp.join(format!("tcp-{protocol}.json"));
        marill(&[
            "eval",
            "--model",
            student.to_str().unwrap(),
            "--task",
            "sst2",
            "--mode",
            "mpc",
            "--protocol",
            protocol,
            "--transport",
            "tcp",
            "--limit",
            "6",
            "--json",
            json.to_str().unwrap(),
        ]);
        let tcp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let memory = &report["student"]["mpc"][i];
        assert_eq!(memory["protocol"], protocol);
        assert_eq!(tcp["n"], 6);
        assert!(
            tcp["agreement"].as_f64().unwrap() >= 5.0 / 6.0,
            "{protocol}: {tcp}"
        );
        for field in ["online_bytes", "rounds"] {
            assert_eq!(
                tcp["cost_per_example"][field], memory["cost_per_example"][field],
                "{protocol} {field}: tcp vs memory"
            );
        }
    }
}

/// A checkpoint whose final norm is private cannot be evaluated under MPC (the client would
/// use the public one): one error line naming the checkpoint and the tensor. Plaintext
/// evaluation still works.
fn check_private_head_refused(student: &std::path::Path, tmp: &std::path::Path) {
    let copy = tmp.join("private-norm");
    let (manifest, mut tensors) = marill::checkpoint::read_checkpoint(student).unwrap();
    let d = marill::model::LlamaConfig::tiny().hidden_size;
    tensors.insert(
        "model.norm.weight".into(),
        candle_core::Tensor::ones(d, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    marill::checkpoint::write_checkpoint(&copy, &manifest, &tensors).unwrap();
    let model = copy.to_str().unwrap();
    let mut args = vec!["eval", "--model", model, "--task", "sst2", "--limit", "2"];
    marill(&args);
    args.extend(["--mode", "mpc"]);
    let out = marill_output(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(model) && stderr.contains("model.norm.weight"),
        "{stderr}"
    );
}
