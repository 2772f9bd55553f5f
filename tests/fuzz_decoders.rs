//! Fuzzing the decoders of what arrives from elsewhere, with proptest: the TCP frame decoder
//! (what a peer sends), the job-shape decoder (what the client asks the server), the server's
//! verdict (what the client and the dealer / helper are told) and the recipe parser (what a
//! user writes). None may panic; the frame and job decoders may not allocate beyond the bound
//! their receiver set before reading (measured by a counting allocator, per thread); what
//! encodes must decode to itself.
//!
//! CI runs proptest's default of 256 cases per target (a few seconds in all). A long campaign:
//! `PROPTEST_CASES=1000000 cargo test --release --test fuzz_decoders fuzz_` (add
//! `-- --test-threads 1` to time targets one by one).

use marill::mpc::Role;
use marill::mpc::tcp::{FRAME_HEADER_BYTES, read_frame, write_frame};
use marill::mpc::transport::{Expect, Frame, TransportError};
use marill::recipe::Recipe;
use marill::secure::ServePolicy;
use marill::secure::job::{ExampleShape, JobShape};
use marill::secure::policy::{MAX_EXAMPLES, MAX_VERDICT_BYTES, Verdict};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// The system allocator, counting what each thread holds and the most it has held.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn held(by: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + by;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; the counters are plain
// thread-local cells without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        held(layout.size() as isize);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        held(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        held(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f`'s result and the most memory this thread held at once while it ran, beyond what it
/// held before (the result included).
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    (out, (PEAK.with(Cell::get) - before).max(0) as usize)
}

/// What error values and messages may take besides the data itself.
const SLACK: usize = 8 << 10;

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        (0..5000usize).prop_map(Expect::Exactly),
        (0..5000usize).prop_map(Expect::AtMost),
    ]
}

/// Frame lengths around every edge: small, at the bounds, huge, and anything.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..6000u64,
        any::<u64>(),
        (u64::MAX - 16)..=u64::MAX,
        ((1u64 << 32) - 8)..((1u64 << 32) + 8),
        Just(1u64 << 63),
    ]
}

fn io(e: std::io::Error) -> TransportError {
    TransportError::Io {
        peer: Role::Client,
        source: e,
    }
}

proptest! {
    /// A header of any length and stamp, then a body cut anywhere (or bytes that are no frame
    /// at all): the decoder returns a frame its bound admits, exactly as sent, or an error;
    /// a length the bound does not admit is refused before anything is read or allocated for it.
    #[test]
    fn fuzz_frame_decoder(
        len in length(),
        stamp in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..6000),
        cut in any::<prop::sample::Index>(),
        garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        expect in expect(),
    ) {
        let input: Vec<u8> = match &garbage {
            Some(bytes) => bytes.clone(),
            None => {
                let mut v = [len.to_le_bytes(), stamp.to_le_bytes()].concat();
                v.extend_from_slice(&body[..cut.index(body.len() + 1)]);
                v
            }
        };
        let bound = match expect {
            Expect::Exactly(n) | Expect::AtMost(n) => n,
        };
        let (result, held) = peak(|| read_frame(&mut &input[..], expect, Role::Client, io));
        prop_assert!(held <= bound + SLACK, "{held} bytes held for a bound of {bound}");
        let header = input.len() >= FRAME_HEADER_BYTES;
        let told = header.then(|| u64::from_le_bytes(input[..8].try_into().unwrap()));
        match result {
            Ok(frame) => {
                prop_assert!(expect.admits(frame.len() as u64));
                prop_assert_eq!(Some(frame.len() as u64), told);
                prop_assert_eq!(frame.bytes(), &input[FRAME_HEADER_BYTES..][..frame.len()]);
                prop_assert_eq!(frame.stamp.to_le_bytes(), &input[8..16]);
            }
            Err(TransportError::Unexpected { len, .. }) => {
                prop_assert_eq!(Some(len), told);
                prop_assert!(!expect.admits(len));
            }
            Err(TransportError::Io { .. }) => {
                // Too short: the header, or the body it announced, was cut.
                let announced = told.filter(|&n| expect.admits(n));
                prop_assert!(!header || announced.is_some_and(|n| input.len() < 16 + n as usize));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// Frames written one after another read back the same, each under its exact length.
    #[test]
    fn fuzz_frame_round_trip(
        frames in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..600), any::<u64>()), 0..6),
    ) {
        let frames: Vec<Frame> = frames.iter().map(|(b, s)| Frame::from_bytes(b, *s)).collect();
        let mut wire = Vec::new();
        for f in &frames {
            write_frame(&mut wire, f).unwrap();
        }
        let mut input = &wire[..];
        for f in &frames {
            let got = read_frame(&mut input, Expect::Exactly(f.len()), Role::Server, io).unwrap();
            prop_assert_eq!(&got, f);
        }
        prop_assert!(input.is_empty());
    }
}

/// Policies with small and large caps, of at least `choices` choice tokens.
fn policy(choices: usize) -> impl Strategy<Value = ServePolicy> {
    (
        proptest::collection::vec(0..400u32, choices..6),
        1..200usize,
        1..64usize,
        prop_oneof![1..16usize, Just(MAX_EXAMPLES)],
        any::<bool>(),
    )
        .prop_map(
            |(choice_tokens, max_tokens, max_batch, max_examples, reveal_scores)| ServePolicy {
                choice_tokens,
                max_tokens,
                max_batch,
                max_examples,
                reveal_scores,
            },
        )
}

/// A job `policy` (of two choice tokens at least) admits.
fn job_within(policy: &ServePolicy) -> impl Strategy<Value = JobShape> + use<> {
    let (tokens, choices) = (policy.max_tokens, policy.choice_tokens.clone());
    let example = (1..=tokens, 2..=choices.len()).prop_map(move |(tokens, c)| ExampleShape {
        tokens,
        choices: choices[..c].to_vec(),
    });
    (
        1..=policy.max_batch,
        proptest::collection::vec(example, 1..=policy.max_examples.min(8)),
    )
        .prop_map(|(batch, shapes)| JobShape { batch, shapes })
}

/// Words near every count's edge, and anything.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..8u64,
        0..70_000u64,
        any::<u64>(),
        (u64::MAX - 4)..=u64::MAX
    ]
}

proptest! {
    /// Any words: no panic, nothing held beyond what the policy's caps allow (its examples'
    /// shapes, the choice ids the message holds), and a job decoded is within the policy and
    /// is exactly what the words encode.
    #[test]
    fn fuzz_job_shape_decoder(
        policy in policy(0),
        words in proptest::collection::vec(word(), 0..48),
    ) {
        let (decoded, held) = peak(|| JobShape::decode(&words, &policy));
        let cap = policy.max_examples * size_of::<ExampleShape>() + 4 * words.len() + SLACK;
        prop_assert!(held <= cap, "{held} bytes held, cap {cap}");
        if let Ok(job) = decoded {
            prop_assert!((1..=policy.max_batch).contains(&job.batch));
            prop_assert!((1..=policy.max_examples).contains(&job.shapes.len()));
            for s in &job.shapes {
                prop_assert!((1..=policy.max_tokens).contains(&s.tokens));
                prop_assert!(s.choices.len() >= 2 && policy.choice_tokens.starts_with(&s.choices));
            }
            prop_assert_eq!(job.encode(), words);
        }
    }

    /// Every job a policy admits survives encoding.
    #[test]
    fn fuzz_job_shape_round_trip(
        (policy, job) in policy(2).prop_flat_map(|p| (Just(p.clone()), job_within(&p))),
    ) {
        prop_assert_eq!(JobShape::decode(&job.encode(), &policy).unwrap(), job);
    }
}

/// Verdicts with reasons of any characters, some longer than a verdict message may be.
fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        any::<bool>().prop_map(|reveal_scores| Verdict::Accepted { reveal_scores }),
        prop_oneof![".{0,40}", "[\\x00-\\x1f\"\\\\]{0,900}", ".{0,1500}"]
            .prop_map(|reason| Verdict::Refused { reason }),
    ]
}

/// Bytes that are nearly a verdict: an encoding with a few bytes replaced, or anything.
fn verdict_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..MAX_VERDICT_BYTES),
        (
            verdict(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(v, edits)| {
                let mut bytes = v.encode();
                for (at, b) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                bytes
            }),
    ]
}

proptest! {
    /// Any bytes: no panic, and no more held than a few times their length.
    #[test]
    fn fuzz_verdict_decoder(bytes in verdict_bytes()) {
        let (_, held) = peak(|| Verdict::decode(&bytes));
        prop_assert!(held <= 4 * bytes.len() + SLACK, "{held} bytes held for {}", bytes.len());
    }

    /// Every verdict's message fits the bound its receivers read under, and decodes to the
    /// verdict, its reason cut short where it had to be.
    #[test]
    fn fuzz_verdict_round_trip(v in verdict()) {
        let bytes = v.encode();
        prop_assert!(bytes.len() <= MAX_VERDICT_BYTES, "{} bytes", bytes.len());
        match (Verdict::decode(&bytes).unwrap(), &v) {
            (Verdict::Refused { reason: got }, Verdict::Refused { reason }) => {
                prop_assert!(reason.starts_with(&got));
                prop_assert!(got == *reason || got.chars().count() == MAX_VERDICT_BYTES / 8);
            }
            (got, _) => prop_assert_eq!(got, v),
        }
    }
}

const RECIPES: [&str; 5] = [
    include_str!("../recipes/arithmetic.toml"),
    include_str!("../recipes/boolq.toml"),
    include_str!("../recipes/quickstart.toml"),
    include_str!("../recipes/sst2-mpcformer.toml"),
    include_str!("../recipes/sst2.toml"),
];

/// What TOML is made of, and values that test a field's checks.
const FRAGMENTS: [&str; 24] = [
    "=",
    "[",
    "]",
    "[[",
    "\"",
    "'",
    "\n",
    "#",
    "{",
    "}",
    ",",
    ".",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "true",
    "99999999999999999999",
    "\"\"\"",
    "[student]\n",
    "rank = 0\n",
    "lr = -1.0\n",
    "\u{0}",
];

/// A bundled recipe with a few edits: deletions, insertions of TOML fragments or of anything.
fn mutated_recipe() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3usize,
        prop_oneof![
            prop::sample::select(&FRAGMENTS[..]).prop_map(str::to_string),
            ".{0,8}"
        ],
    );
    (
        prop::sample::select(&RECIPES[..]),
        proptest::collection::vec(edit, 1..5),
    )
        .prop_map(|(recipe, edits)| {
            let mut text: Vec<char> = recipe.chars().collect();
            for (at, kind, fragment) in edits {
                let i = at.index(text.len() + 1);
                match kind {
                    0 => drop(text.drain(i..(i + fragment.len()).min(text.len()))),
                    _ => drop(text.splice(i..i, fragment.chars())),
                }
            }
            text.into_iter().collect()
        })
}

/// Parses `text` as a recipe: an error is one line that starts with the recipe's path, and a
/// recipe parsed writes out as TOML that parses to the same recipe.
fn parses_cleanly(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("recipes/fuzz.toml");
    match Recipe::parse(text, path) {
        Err(e) => {
            let message = format!("{e:#}");
            prop_assert!(!message.contains('\n'), "several lines: {message}");
            prop_assert!(message.starts_with("recipes/fuzz.toml: "), "{message}");
        }
        Ok(recipe) => {
            let written = toml::to_string(&recipe).unwrap();
            let again = Recipe::parse(&written, path).unwrap();
            prop_assert_eq!(toml::to_string(&again).unwrap(), written);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_recipe_parser_on_mutated_recipes(text in mutated_recipe()) {
        parses_cleanly(&text)?;
    }

    #[test]
    fn fuzz_recipe_parser_on_any_text(text in prop_oneof![".{0,200}", "[a-z_\\[\\]=\"' .0-9\n#{},-]{0,300}"]) {
        parses_cleanly(&text)?;
    }
}

/// The bundled recipes parse and write out as TOML that parses to the same recipe.
#[test]
fn bundled_recipes_round_trip() {
    for text in RECIPES {
        parses_cleanly(text).unwrap();
        assert!(Recipe::parse(text, Path::new("r.toml")).is_ok());
    }
}
