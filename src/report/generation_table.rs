//! The MARILL-vs-standard table of a generation task: exact match of the teacher and the
//! student (plaintext on the whole test split, MPC greedy decoding on the first rows), how
//! often MPC decoding agrees with plaintext greedy decoding, and the cost of a prompt's prefill
//! and of each further token, with the teacher / student ratios of both.
//!
//! `per token` is amortised over the prompts a decoding step carries; `per step` is what one
//! step of the batch costs, the time each of its prompts waits for a token (at batch 1 the
//! latency of a token of one query).

use super::run::{ModelReport, RunReport};
use super::table::{CLASS_HEADER, class_row, fraction, mb};
use crate::secure::generation_report::SecureGenerationReport;
use crate::secure::report::ExampleCost;
use std::fmt::Write;

/// `| online | rounds | est. lan | est. wan |` of `c`.
fn cost_cells(c: &ExampleCost) -> String {
    format!(
        "{:.2} MB | {:.0} | {:.3} s | {:.2} s",
        mb(c.online_bytes),
        c.rounds,
        c.est_seconds.lan,
        c.est_seconds.wan
    )
}

/// `| communication × | rounds × | lan × | wan × |` of teacher over student.
fn ratio_cells(t: &ExampleCost, s: &ExampleCost) -> String {
    format!(
        "{:.2}× | {:.2}× | {:.2}× | {:.2}×",
        t.online_bytes / s.online_bytes,
        t.rounds / s.rounds,
        t.est_seconds.lan / s.est_seconds.lan,
        t.est_seconds.wan / s.est_seconds.wan
    )
}

fn row(out: &mut String, name: &str, m: &ModelReport<SecureGenerationReport>) {
    for r in &m.mpc {
        let step = &r.per_step;
        let _ = writeln!(
            out,
            "| {name} | {} | {:.3} | {} | {:.3} | {} / {} | {} | {} | {:.0} | {:.2} s | {:.3} s |",
            r.protocol,
            m.plaintext_accuracy,
            fraction(r.plaintext_accuracy),
            r.accuracy,
            fraction(r.token_agreement),
            fraction(r.sequence_agreement),
            cost_cells(&r.prefill),
            cost_cells(&r.per_token),
            step.rounds,
            step.est_seconds.wan,
            step.wall_seconds
        );
    }
}

/// The report as Markdown.
pub fn markdown(r: &RunReport<SecureGenerationReport>) -> String {
    let new_tokens = r.teacher.mpc.first().map_or(0, |m| m.max_new_tokens);
    let mut out = r.header(&format!(
        "greedy decoding of up to {new_tokens} tokens, {} prompts a step; the prefill per \
         prompt (to its first token), each further token amortised over a step's prompts, and \
         one step of the batch: its rounds and estimated wan time, and its time measured \
         in-process (what each prompt waits for a token at this batch; its rounds are a lone \
         query's).",
        r.batch
    ));
    out.push_str(
        "| model | protocol | exact match (plaintext, test) | exact match (plaintext, these rows) | exact match (MPC) | agreement with plaintext: tokens / sequences | prefill: online | prefill: rounds | prefill: est. lan | prefill: est. wan | per token: online | per token: rounds | per token: est. lan | per token: est. wan | step: rounds | step: est. wan | step: measured |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    row(&mut out, "teacher", &r.teacher);
    row(&mut out, "student", &r.student);
    out.push_str(
        "\nTeacher / student, for the prefill and per generated token:\n\n\
         | protocol | prefill: communication × | prefill: rounds × | prefill: runtime × (lan) | prefill: runtime × (wan) | per token: communication × | per token: rounds × | per token: runtime × (lan) | per token: runtime × (wan) | step: latency × (wan) | step: measured × |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (t, s) in r.teacher.mpc.iter().zip(&r.student.mpc) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2}× | {:.2}× |",
            t.protocol,
            ratio_cells(&t.prefill, &s.prefill),
            ratio_cells(&t.per_token, &s.per_token),
            t.per_step.est_seconds.wan / s.per_step.est_seconds.wan,
            t.per_step.wall_seconds / s.per_step.wall_seconds
        );
    }
    out.push_str(
        "\nWhere the savings land (online MB by operation class, per prompt's prefill and per \
         token; offline MB; the server weights' one-time masking):\n\n",
    );
    out.push_str(CLASS_HEADER);
    for (t, s) in r.teacher.mpc.iter().zip(&r.student.mpc) {
        for (name, m) in [("teacher", t), ("student", s)] {
            for (phase, c) in [("prefill", &m.prefill), ("per token", &m.per_token)] {
                class_row(
                    &mut out,
                    &m.protocol,
                    &format!("{name}, {phase}"),
                    c,
                    m.weight_setup.online_bytes,
                );
            }
        }
    }
    out.push_str(&r.accuracy_kept());
    out
}
