//! The operations whose views are tested, each on a secret of the client's and one of the
//! server's, and the test that no party's view depends on them.
//!
//! Every case computes on both secrets (most on their sum), so each party's view is tested
//! against a secret it must not learn: the client's input for the server, the server's for the
//! client, both for the dealer / helper. Both secrets change between the two runs of a pair,
//! which is stricter: no view may depend even on its own party's secret. Secrets are drawn
//! normal against uniform over the operation's range, and all zero against all at half the
//! range. Nothing is excluded: every frame of every view is a uniformly masked value or share
//! (the argmax revealed to the client arrives as the server's uniform share of it), a DCF key,
//! or a comparison's opening whose bits above the comparison's width are zero in both runs
//! alike; every opening is a masked value.

use super::check::check;
use super::record::{Recorded, Setup, run_recorded};
use crate::mpc::fixed::FixedPoint;
use crate::mpc::prg::Prg;
use crate::mpc::protocol::{Comparison, Protocol, ProtocolKind, Role};
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::Result;

/// The secrets of one run as the running party holds them: its own, the other's `None`.
pub(crate) struct Secrets<'a> {
    pub x: Option<&'a [f64]>,
    pub w: Option<&'a [f64]>,
}

impl Secrets<'_> {
    /// The client's `x` and the server's `w`, both shared as `shape`.
    fn shared(&self, p: &mut dyn Protocol, shape: &[usize]) -> Result<(Share, Share)> {
        let x = ops::share_f64(p, Role::Client, self.x, shape)?;
        let w = ops::share_f64(p, Role::Server, self.w, shape)?;
        Ok((x, w))
    }

    /// `x + w`, shared.
    fn sum(&self, p: &mut dyn Protocol, shape: &[usize]) -> Result<Share> {
        let (x, w) = self.shared(p, shape)?;
        x.add(&w)
    }
}

/// What a case runs: a program on both secrets as the party holds them, or an operation on
/// their sum, shared.
#[derive(Clone, Copy)]
pub(crate) enum Program {
    Secrets(fn(&mut dyn Protocol, &Secrets, &Case) -> Result<()>),
    OnSum(fn(&mut dyn Protocol, &Share) -> Result<()>),
}

/// One operation under test.
pub(crate) struct Case {
    pub name: &'static str,
    /// The shapes of the client's `x` and of the server's `w`.
    pub x_shape: &'static [usize],
    pub w_shape: &'static [usize],
    /// How large `|x|` and `|w|` may be for the operation's range.
    pub large: f64,
    pub program: Program,
}

impl Case {
    /// `op` on `x + w`, both of `shape`.
    const fn on_sum(
        name: &'static str,
        shape: &'static [usize],
        large: f64,
        op: fn(&mut dyn Protocol, &Share) -> Result<()>,
    ) -> Case {
        Case {
            name,
            x_shape: shape,
            w_shape: shape,
            large,
            program: Program::OnSum(op),
        }
    }
}

const ROWS_COLS: &[usize] = &[16, 64];
const ROWS_16: &[usize] = &[64, 16];

/// The default comparison at the runs' (default) fixed point.
fn exact() -> Comparison {
    Comparison::default_for(FixedPoint::default())
}

pub(crate) const CASES: [Case; 10] = [
    Case {
        name: "input sharing",
        x_shape: ROWS_COLS,
        w_shape: ROWS_COLS,
        large: 1e6,
        program: Program::Secrets(|p, s, c| s.shared(p, c.x_shape).map(drop)),
    },
    Case {
        name: "mul",
        x_shape: ROWS_COLS,
        w_shape: ROWS_COLS,
        large: 1e4,
        program: Program::Secrets(|p, s, c| {
            let (x, w) = s.shared(p, c.x_shape)?;
            ops::mul(p, &x, &w).map(drop)
        }),
    },
    Case {
        name: "matmul with a secret server weight",
        x_shape: &[16, 64],
        w_shape: &[64, 16],
        large: 50.0,
        program: Program::Secrets(|p, s, c| {
            let x = ops::share_f64(p, Role::Client, s.x, c.x_shape)?;
            let w = ops::weight_f64(p, s.w, c.w_shape)?;
            ops::matmul_weight(p, &x, &w).map(drop)
        }),
    },
    Case::on_sum("truncation", ROWS_COLS, 1e6, |p, x| {
        p.truncate(x, 12).map(drop)
    }),
    Case::on_sum("comparison and relu", ROWS_COLS, 1e5, |p, x| {
        ops::less_than(p, x, &[0.0, 1.5], exact())?;
        ops::relu(p, x, exact()).map(drop)
    }),
    Case::on_sum("max", ROWS_16, 1e5, |p, x| {
        ops::max_last(p, x, exact()).map(drop)
    }),
    Case::on_sum("softmax", &[4, 16, 16], 50.0, |p, x| {
        approx::softmax(p, x, Some(&approx::causal_mask(x.shape())?)).map(drop)
    }),
    Case::on_sum("silu", ROWS_COLS, 100.0, |p, x| {
        approx::silu(p, x).map(drop)
    }),
    Case::on_sum("rms_norm", ROWS_COLS, 300.0, |p, x| {
        let gamma = vec![1.5; x.shape()[1]];
        approx::rms_norm(p, x, Some(&gamma), 1e-5).map(drop)
    }),
    Case::on_sum("argmax revealed to the client", ROWS_16, 1e5, |p, x| {
        let (_, index) = ops::argmax_last(p, x, exact())?;
        let revealed = p.reveal(&index, Some(Role::Client))?;
        anyhow::ensure!(revealed.is_some() == (p.role() == Role::Client));
        Ok(())
    }),
];

/// How a run's secrets are drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Draw {
    Zero,
    /// Normal with s.d. `large / 8`.
    Normal,
    /// Uniform on `(-large, large) / 2`.
    Uniform,
    /// `±large / 2`, random signs.
    Large,
}

/// `n` secrets drawn as `draw` says for a case of range `large`.
pub(crate) fn draw(draw: Draw, n: usize, large: f64, tag: u64) -> Vec<f64> {
    let mut rng = Prg::from_seed(Prg::derived_seed(0x5ec2e7, tag));
    let unit = |rng: &mut Prg| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    match draw {
        Draw::Zero => vec![0.0; n],
        Draw::Normal => rng.gaussian(n, large / 8.0),
        Draw::Uniform => (0..n).map(|_| unit(&mut rng) * large).collect(),
        Draw::Large => (0..n)
            .map(|_| unit(&mut rng).signum() * large / 2.0)
            .collect(),
    }
}

impl Case {
    /// Runs the case on `kind` set up as `setup` says, both secrets drawn as `how` (`tag`
    /// telling draws apart).
    pub(crate) fn run(
        &self,
        kind: ProtocolKind,
        (how, tag): (Draw, u64),
        setup: Setup,
    ) -> Result<Recorded<()>> {
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let x = draw(how, numel(self.x_shape), self.large, 2 * tag);
        let w = draw(how, numel(self.w_shape), self.large, 2 * tag + 1);
        run_recorded(kind, setup, |p| {
            let secrets = Secrets {
                x: (p.role() == Role::Client).then_some(x.as_slice()),
                w: (p.role() == Role::Server).then_some(w.as_slice()),
            };
            match self.program {
                Program::Secrets(program) => program(p, &secrets, self),
                Program::OnSum(op) => {
                    let x = secrets.sum(p, self.x_shape)?;
                    op(p, &x)
                }
            }
        })
    }
}

/// Two runs with different secrets for each pair of draws.
pub(crate) const PAIRS: [(Draw, Draw); 2] =
    [(Draw::Normal, Draw::Uniform), (Draw::Zero, Draw::Large)];

/// The checks of views on `case`: nothing of its views is public.
fn check_views(case: &Case) {
    let failures = check(
        &|kind, draw, setup| case.run(kind, draw, setup),
        &|view, _| (view.to_vec(), Vec::new()),
    );
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        case.name,
        failures.join("\n")
    );
}

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).expect("a case")
}

/// One test per case: they run in parallel and fail by name.
macro_rules! view_tests {
    ($($test:ident: $case:literal,)*) => {$(
        #[test]
        fn $test() {
            check_views(case($case));
        }
    )*};
}

view_tests! {
    view_of_input_sharing: "input sharing",
    view_of_mul: "mul",
    view_of_matmul_with_a_secret_weight: "matmul with a secret server weight",
    view_of_truncation: "truncation",
    view_of_comparison_and_relu: "comparison and relu",
    view_of_max: "max",
    view_of_softmax: "softmax",
    view_of_silu: "silu",
    view_of_rms_norm: "rms_norm",
    view_of_argmax_revealed_to_the_client: "argmax revealed to the client",
}
