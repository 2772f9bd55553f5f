//! The MARILL-vs-standard table of a choice task: accuracy, online communication, rounds and
//! estimated time of the teacher and the student, per example (amortised over a batch) and
//! for one query alone (its latency at batch 1), with the ratios of both.

use super::run::{ModelReport, RunReport};
use crate::mpc::cost::CostClass;
use crate::mpc::latency::Basis;
use crate::secure::SecureEvalReport;
use crate::secure::report::ExampleCost;
use std::fmt::Write;

pub(super) fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn row(out: &mut String, name: &str, m: &ModelReport<SecureEvalReport>) {
    for r in &m.mpc {
        let (c, q) = (&r.cost_per_example, &r.latency_one_query);
        let _ = writeln!(
            out,
            "| {name} | {} | {:.3} | {:.3} | {:.1} MB | {:.0} | {:.2} s | {:.2} s | {:.0} | {:.2} s | {:.2} s |",
            r.protocol,
            m.plaintext_accuracy,
            r.accuracy,
            mb(c.online_bytes),
            c.rounds,
            c.est_seconds.lan,
            c.est_seconds.wan,
            q.rounds,
            q.est_seconds.lan,
            q.est_seconds.wan
        );
    }
}

/// The report as Markdown.
pub fn markdown(r: &RunReport<SecureEvalReport>) -> String {
    let mut out = r.header(&format!(
        "per example, amortised over secure forwards of up to {} rows, and for one query alone \
         at batch 1, its latency ({}).",
        r.batch,
        latency_basis(r)
    ));
    out.push_str("| model | protocol | accuracy (plaintext) | accuracy (MPC) | online | rounds | est. lan | est. wan | one query: rounds | one query: lan | one query: wan |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    row(&mut out, "teacher", &r.teacher);
    row(&mut out, "student", &r.student);
    out.push_str("\nTeacher / student, per example and for one query alone:\n\n| protocol | communication × | rounds × | runtime × (lan) | runtime × (wan) | one query: rounds × | one query: latency × (lan) | one query: latency × (wan) | MPC agreement (teacher / student) |\n|---|---|---|---|---|---|---|---|---|\n");
    for (t, s) in r.teacher.mpc.iter().zip(&r.student.mpc) {
        let (tc, sc) = (&t.cost_per_example, &s.cost_per_example);
        let (tq, sq) = (&t.latency_one_query, &s.latency_one_query);
        let _ = writeln!(
            out,
            "| {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {} / {} |",
            t.protocol,
            tc.online_bytes / sc.online_bytes,
            tc.rounds / sc.rounds,
            tc.est_seconds.lan / sc.est_seconds.lan,
            tc.est_seconds.wan / sc.est_seconds.wan,
            tq.rounds / sq.rounds,
            tq.est_seconds.lan / sq.est_seconds.lan,
            tq.est_seconds.wan / sq.est_seconds.wan,
            fraction(t.agreement),
            fraction(s.agreement)
        );
    }
    out.push_str(
        "\nWhere the savings land (online MB per example by operation class; offline MB; the \
         server weights' one-time masking):\n\n",
    );
    out.push_str(CLASS_HEADER);
    for (t, s) in r.teacher.mpc.iter().zip(&r.student.mpc) {
        for (name, m) in [("teacher", t), ("student", s)] {
            class_row(
                &mut out,
                &m.protocol,
                name,
                &m.cost_per_example,
                m.weight_setup.online_bytes,
            );
        }
    }
    out.push_str(&r.accuracy_kept());
    out
}

/// The by-class table's head.
pub(super) const CLASS_HEADER: &str = "| protocol | model | matmul | softmax | norm | activation | \
     other | offline | weight setup |\n|---|---|---|---|---|---|---|---|---|\n";

/// A by-class row: `c`'s online MB in each class, its offline MB, the weight setup's MB.
pub(super) fn class_row(
    out: &mut String,
    protocol: &str,
    name: &str,
    c: &ExampleCost,
    weight_setup_bytes: u64,
) {
    let class = |k: CostClass| c.by_class.get(&k).map_or(0.0, |x| mb(x.online_bytes));
    let _ = writeln!(
        out,
        "| {protocol} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        class(CostClass::Matmul),
        class(CostClass::Softmax),
        class(CostClass::Norm),
        class(CostClass::Activation),
        class(CostClass::Other),
        mb(c.offline_bytes),
        mb(weight_setup_bytes as f64)
    );
}

/// How the reports' latencies were obtained: `measured` (every forward one query), else
/// `derived from the batched run`.
fn latency_basis(r: &RunReport<SecureEvalReport>) -> &'static str {
    let mut all = r.teacher.mpc.iter().chain(&r.student.mpc);
    if all.all(|m| m.latency_one_query.basis == Basis::Measured) {
        "measured: every forward held one query"
    } else {
        "derived from the batched run: its rounds up to a forward's first reveal, its bytes and compute per example"
    }
}

/// A fraction to three places, or `n/a` where it was not measured.
pub(super) fn fraction(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}
