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
    assert!(out.contains("one query: latency × (wan)"), "{out}");
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
            // Six rows in one forward (batch 8): a lone query waits for the forward's rounds.
            let query = r["latency_one_query"]["rounds"].as_f64().unwrap();
            let per_example = r["cost_per_example"]["rounds"].as_f64().unwrap();
            assert!(
                query > 4.0 * per_example,
                "{kind}: {query} vs {per_example}"
            );
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
/// in-memory run inside `marill run` cost on the same rows, and agrees with plaintext. With the
/// parties started by hand, the client holds only the manifest: `private.safetensors` is absent
/// on its side, and the server alone reads it.
fn check_tcp_transport(run: &std::path::Path, report: &serde_json::Value, tmp: &std::path::Path) {
    let student = run.join("student");
    let public_copy = tmp.join("client-view");
    std::fs::create_dir_all(&public_copy).unwrap();
    std::fs::copy(
        student.join("manifest.json"),
        public_copy.join("manifest.json"),
    )
    .unwrap();
    check_foreign_choices_refused(&student, &public_copy);
    for (i, protocol) in ["2pc-dealer", "3pc"].into_iter().enumerate() {
        let json = tmp.join(format!("tcp-{protocol}.json"));
        let memory = &report["student"]["mpc"][i];
        let common = [
            "eval",
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
        ];
        if protocol == "2pc-dealer" {
            let outs = by_hand(&student, &public_copy, &common);
            assert!(outs.iter().all(|o| o.status.success()), "{outs:?}");
        } else {
            let mut args = common.to_vec();
            args.extend(["--model", student.to_str().unwrap(), "--reference"]);
            marill(&args);
        }
        let tcp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(memory["protocol"], protocol);
        assert_eq!(tcp["n"], 6);
        assert_eq!(tcp["scores_revealed"], false);
        let labels = |r: &serde_json::Value| -> Vec<u64> {
            let rows = r["predictions"].as_array().unwrap();
            rows.iter()
                .take(6)
                .map(|p| p["mpc"].as_u64().unwrap())
                .collect()
        };
        let same = labels(&tcp)
            .iter()
            .zip(labels(memory))
            .filter(|(a, b)| **a == *b)
            .count();
        assert!(same >= 5, "{protocol}: tcp {tcp} vs memory {memory}");
        if protocol == "3pc" {
            assert!(tcp["agreement"].as_f64().unwrap() >= 5.0 / 6.0, "{tcp}");
        } else {
            assert!(tcp["agreement"].is_null() && tcp["plaintext_accuracy"].is_null());
        }
        for field in ["online_bytes", "rounds"] {
            for cost in ["cost_per_example", "latency_one_query"] {
                assert_eq!(
                    tcp[cost][field], memory[cost][field],
                    "{protocol} {cost} {field}: tcp vs memory"
                );
            }
        }
        // TLS and framing on top of the payload, but not much on top.
        let wire = tcp["wire_bytes"].as_f64().unwrap();
        let c = &tcp["cost_per_example"];
        let w = &tcp["weight_setup"];
        let payload = 6.0
            * (c["online_bytes"].as_f64().unwrap() + c["offline_bytes"].as_f64().unwrap())
            + w["online_bytes"].as_f64().unwrap()
            + w["offline_bytes"].as_f64().unwrap();
        assert!(
            wire > payload && wire < 1.1 * payload + 1e5,
            "{wire} vs {payload}"
        );
    }
}

/// A client asking the sst2 student's server about RTE's choice words (another part of the
/// vocabulary) is refused before any secret is touched: every party exits non-zero with one
/// error line, the client's giving the server's reason.
fn check_foreign_choices_refused(student: &std::path::Path, client_model: &std::path::Path) {
    let common = [
        "eval",
        "--task",
        "rte",
        "--mode",
        "mpc",
        "--transport",
        "tcp",
        "--limit",
        "2",
    ];
    let outs = by_hand(student, client_model, &common);
    for (role, out) in ["client", "server", "dealer"].iter().zip(&outs) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{role}: {stderr}");
        assert!(
            stderr.contains("not this task's answer words"),
            "{role}: {stderr}"
        );
    }
    let client = String::from_utf8_lossy(&outs[0].stderr);
    assert!(client.contains("the server refused the job"), "{client}");
}

/// 2pc-dealer with the server and dealer started by hand (`marill party --model`, identities
/// from `marill keygen`), the client evaluating `client_model`; every party's output, client
/// first.
fn by_hand(
    student: &std::path::Path,
    client_model: &std::path::Path,
    common: &[&str],
) -> Vec<std::process::Output> {
    let tls = tempfile::tempdir().unwrap();
    let roles = ["client", "server", "dealer"];
    for role in roles {
        marill(&[
            "keygen",
            "--role",
            role,
            "--out",
            tls.path().to_str().unwrap(),
        ]);
    }
    let ports: Vec<u16> = roles
        .iter()
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let peers = |me: usize| -> Vec<String> {
        (0..3)
            .filter(|&j| j != me)
            .flat_map(|j| {
                [
                    "--peer".to_string(),
                    format!("{}=127.0.0.1:{}", roles[j], ports[j]),
                ]
            })
            .collect()
    };
    let children: Vec<_> = (1..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_marill"))
                .args(["party", "--role", roles[i], "--timeout", "60"])
                .args(["--listen", &format!("127.0.0.1:{}", ports[i])])
                .args(["--model", student.to_str().unwrap()])
                .args(["--tls-dir", tls.path().to_str().unwrap()])
                .args(peers(i))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut args = common.to_vec();
    let listen = format!("127.0.0.1:{}", ports[0]);
    let client_peers = peers(0);
    args.extend([
        "--model",
        client_model.to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    args.extend(["--tls-dir", tls.path().to_str().unwrap()]);
    args.extend(client_peers.iter().map(String::as_str));
    let mut outs = vec![marill_output(&args)];
    outs.extend(children.into_iter().map(|c| c.wait_with_output().unwrap()));
    outs
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
