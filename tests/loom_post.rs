//! Loom models of post's ring and wake, run on the real code
//! (`RUSTFLAGS="--cfg loom"`, see `make loom`): a consumer going to sleep
//! never misses an event (no lost wake), no event is taken twice, one
//! sender's events come out in order (taken one at a time or in batches),
//! and freeing a target never misses a post in flight.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

use cbreg::post::model::Queue;

#[test]
fn a_consumer_going_to_sleep_misses_no_event() {
    loom::model(|| {
        let q = Arc::new(Queue::new(2));
        let sender = {
            let q = q.clone();
            thread::spawn(move || assert!(q.post(1)))
        };
        q.prepare_sleep();
        let saw = q.any_pending();
        sender.join().unwrap();
        assert!(
            saw || q.was_signalled(),
            "the consumer slept on an event nobody woke it for"
        );
    });
}

#[test]
fn one_senders_events_are_taken_once_each_and_in_order() {
    loom::model(|| {
        let q = Arc::new(Queue::new(2));
        let sender = {
            let q = q.clone();
            thread::spawn(move || {
                let mut sent = Vec::new();
                for n in 1..=3 {
                    if q.post(n) {
                        sent.push(n);
                    }
                }
                sent
            })
        };
        let mut taken = Vec::new();
        for _ in 0..2 {
            if let Some(n) = q.take() {
                taken.push(n);
            }
        }
        let sent = sender.join().unwrap();
        while let Some(n) = q.take() {
            taken.push(n);
        }
        assert_eq!(taken, sent, "lost, repeated or reordered");
    });
}

#[test]
fn a_batch_takes_each_event_once_and_in_order_and_frees_its_places() {
    loom::model(|| {
        let q = Arc::new(Queue::new(2));
        let sender = {
            let q = q.clone();
            thread::spawn(move || (1..=3).filter(|&n| q.post(n)).collect::<Vec<_>>())
        };
        let mut taken = q.take_batch(2);
        let sent = sender.join().unwrap();
        taken.extend(q.take_batch(2));
        taken.extend(q.take_batch(2));
        assert_eq!(taken, sent, "lost, repeated or reordered");
        assert!(!q.any_pending());
    });
}

#[test]
fn freeing_a_target_never_misses_a_post_in_flight() {
    loom::model(|| {
        let q = Arc::new(Queue::new(2));
        let sender = {
            let q = q.clone();
            thread::spawn(move || q.post(1))
        };
        let dropped = q.free();
        let queued = sender.join().unwrap();
        // Whatever the post did happened before the free finished: either
        // it was refused, or the free dropped (and counted) its event.
        assert_eq!(dropped, u64::from(queued));
        assert!(!q.any_pending());
    });
}
