//! `marill party`: each MPC party its own process over TCP on loopback.

use std::net::TcpListener;
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn marill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marill"))
}

/// Keys and certificates of the three 2pc-dealer parties, made by `marill keygen`, in one
/// directory (each party reads its own key and the others' certificates).
fn identities() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for role in ["client", "server", "dealer"] {
        let out = marill()
            .args(["keygen", "--role", role, "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn party(role: &str, ports: &[(&str, u16)], timeout: &str, tls: &std::path::Path) -> Command {
    let mut cmd = marill();
    let own = ports.iter().find(|(r, _)| *r == role).unwrap().1;
    cmd.args([
        "party",
        "--role",
        role,
        "--listen",
        &format!("127.0.0.1:{own}"),
    ]);
    cmd.args(["--case", "rsqrt", "--timeout", timeout]);
    cmd.arg("--tls-dir").arg(tls);
    for (other, port) in ports.iter().filter(|(r, _)| *r != role) {
        cmd.args(["--peer", &format!("{other}=127.0.0.1:{port}")]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[test]
fn three_processes_compute_rsqrt_over_tcp() {
    let ports = [
        ("client", free_port()),
        ("server", free_port()),
        ("dealer", free_port()),
    ];
    let tls = identities();
    let children: Vec<_> = ["server", "dealer", "client"]
        .iter()
        .map(|role| party(role, &ports, "30", tls.path()).spawn().unwrap())
        .collect();
    for (child, role) in children.into_iter().zip(["server", "dealer", "client"]) {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{role}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["role"], role);
        if role == "client" {
            let error = report["rel_l2_error"].as_f64().unwrap();
            assert!(error < 1e-2, "relative L2 error {error}");
            assert!(
                report["cost"]["online"]["other"]["bytes_sent"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
}

#[test]
fn a_missing_peer_is_a_clear_error_not_a_hang() {
    let ports = [
        ("client", free_port()),
        ("server", free_port()),
        ("dealer", free_port()),
    ];
    let tls = identities();
    let out = party("client", &ports, "2", tls.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
}
