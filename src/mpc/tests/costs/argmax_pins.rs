//! Pins for `argmax_packed`: the tournament of `ops::argmax_last` carrying one packed element
//! per pair, then the index revealed to the client; on a vocabulary-sized row too, whose
//! 2pc-dealer critical path is 16 levels of 2 rounds and the reveal.

use super::ops_pins::tournament;
use super::{C, Cmp, Model, pin};
use crate::mpc::argmax_packed::{PackedArgmax, argmax_packed};
use crate::mpc::protocol::{ProtocolKind, Role};

const SPEC: PackedArgmax = PackedArgmax {
    scale_bits: 16,
    int_bits: 7,
    resolution_bits: 6,
};

fn formula(m: &mut Model, shape: &[usize]) {
    let n = *shape.last().expect("rank >= 1");
    let cmp = SPEC.comparison(n).expect("fits");
    tournament(m, shape, Cmp::of(cmp), 1);
    let rows = shape.iter().product::<usize>() / n;
    m.reveal(rows as u64, Some(C));
}

#[test]
fn argmax_packed_costs() {
    pin(
        "argmax_packed",
        &[&[2, 4], &[3, 7], &[1, 49_152]],
        |p, x| argmax_packed(p, x, SPEC, Role::Client).map(drop),
        formula,
    );
    let mut vocab = Model::new(ProtocolKind::TwoPartyDealer);
    formula(&mut vocab, &[1, 49_152]);
    assert_eq!(vocab.cost.critical_rounds(), 33);
}
