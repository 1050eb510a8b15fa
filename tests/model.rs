//! Random operation sequences checked against a simple model: a map of
//! live ids. Statuses, return values, releases and stats must all agree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cbreg::{Arg, Registry, Status, Value};

/// xorshift64*: small, deterministic, good enough to pick operations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Released(u64, Arc<std::sync::Mutex<Vec<u64>>>);
impl Drop for Released {
    fn drop(&mut self) {
        self.1.lock().unwrap().push(self.0);
    }
}

#[derive(Default)]
struct Model {
    live: HashMap<u64, (i64, bool)>, // id -> (value it returns, one-shot)
    dead: Vec<u64>,
    released: HashSet<u64>,
}

fn run(seed: u64, steps: usize) {
    let reg = Registry::new().unwrap();
    let mut rng = Rng(seed | 1);
    let mut model = Model::default();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut next_tag = 0u64;
    let mut registered = 0u64;
    let mut tag_of: HashMap<u64, u64> = HashMap::new(); // release tag -> id
    for step in 0..steps {
        let op = rng.below(100);
        let ids: Vec<u64> = model
            .live
            .keys()
            .copied()
            .chain(model.dead.iter().copied())
            .collect();
        let pick = |rng: &mut Rng| {
            if ids.is_empty() {
                1 << 32 | 1
            } else {
                ids[rng.below(ids.len())]
            }
        };
        match op {
            0..=29 => {
                let value = rng.next() as i64;
                let once = rng.below(4) == 0;
                next_tag += 1;
                let tag = next_tag;
                let guard = Released(tag, log.clone());
                let f = move |_: &[Arg], ret: &mut Value| {
                    let _ = &guard;
                    *ret = Value::i64(value);
                    Ok(())
                };
                let sub = if once {
                    reg.register_once(f)
                } else {
                    reg.register(f)
                };
                let id = sub.unwrap().detach();
                assert!(
                    !model.live.contains_key(&id) && !model.dead.contains(&id),
                    "id {id:#x} reused"
                );
                model.live.insert(id, (value, once));
                registered += 1;
                tag_of.insert(tag, id);
            }
            30..=64 => {
                let id = pick(&mut rng);
                let got = reg.invoke(id, &[Arg::i64(step as i64)]);
                match model.live.get(&id).copied() {
                    Some((value, once)) => {
                        assert_eq!(
                            got.map(|v| v.as_i64()),
                            Ok(Some(value)),
                            "seed {seed} step {step}"
                        );
                        if once {
                            model.live.remove(&id);
                            model.dead.push(id);
                        }
                    }
                    None => assert_eq!(
                        got.unwrap_err(),
                        Status::NotFound,
                        "seed {seed} step {step}"
                    ),
                }
            }
            65..=84 => {
                let id = pick(&mut rng);
                let expect = if model.live.remove(&id).is_some() {
                    model.dead.push(id);
                    Status::Ok
                } else {
                    Status::NotFound
                };
                assert_eq!(reg.unregister(id), expect, "seed {seed} step {step}");
            }
            85..=89 => {
                let n = model.live.len();
                model.dead.extend(model.live.drain().map(|(id, _)| id));
                assert_eq!(reg.clear(), n, "seed {seed} step {step}");
            }
            _ => assert_eq!(reg.collect(), 0, "nothing is ever in flight here"),
        }
        // Releases ran exactly for the entries that left, at once.
        let released: Vec<u64> = log
            .lock()
            .unwrap()
            .drain(..)
            .map(|tag| tag_of[&tag])
            .collect();
        for id in released {
            assert!(model.dead.contains(&id), "released a live entry");
            assert!(model.released.insert(id), "released twice");
        }
        assert_eq!(
            model.released.len(),
            model.dead.len(),
            "seed {seed} step {step}"
        );
        let stats = reg.stats();
        assert_eq!(stats.live, model.live.len() as u64);
        assert_eq!(stats.registered, registered);
        assert_eq!(stats.released, model.dead.len() as u64);
        assert_eq!(stats.pending, 0);
    }
}

#[test]
fn random_sequences_agree_with_the_model() {
    for seed in 1..=30u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1500);
    }
}
