//! The event queue: a calendar of one bucket per virtual millisecond over a window ahead of
//! the clock, and a binary heap for events beyond it.
//!
//! Nearly every event is due within a second (message latencies are tens of milliseconds,
//! rounds are one second), so a push is an append to its millisecond's bucket and a pop takes
//! the front of the current one: O(1), where the heap of ~10^4–10^5 events paid a
//! cache-missing sift per pop.
//!
//! Events carry a key (the engine's: origin node and that node's count of events caused), and
//! events of one millisecond pop in key order, not in push order: the engine pushes from
//! several threads' shards, and the order of pushes depends on how the fleet is sharded
//! where the keys do not. A bucket is sorted by key when it becomes current (at its first
//! pop); an event pushed into the current bucket after that (zero delay: an event a node
//! caused for itself at the same instant) pops after those already there, in push order.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Milliseconds covered by the buckets (a power of two).
const WINDOW: u64 = 4096;
/// A drained bucket keeps at most this many slots.
const KEEP: usize = 64;

pub struct Queue<T> {
    buckets: Vec<VecDeque<(u64, T)>>,
    /// The time of the current bucket; every queued event is at `base` or later.
    base: u64,
    /// The current bucket has been sorted by key (it is being popped).
    sorted: bool,
    /// Events in the buckets.
    near: usize,
    far: BinaryHeap<Far<T>>,
}

struct Far<T> {
    at: u64,
    key: u64,
    item: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.key) == (o.at, o.key)
    }
}
impl<T> Eq for Far<T> {}
impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Far<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.key).cmp(&(self.at, self.key)) // min-heap
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Queue<T> {
    pub fn new() -> Self {
        Queue {
            buckets: (0..WINDOW).map(|_| VecDeque::new()).collect(),
            base: 0,
            sorted: false,
            near: 0,
            far: BinaryHeap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.near + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue `item` at `at` with the ordering `key`. An event in the past is due at once
    /// (after those already due).
    pub fn push(&mut self, at: u64, key: u64, item: T) {
        let at = at.max(self.base);
        if at < self.base + WINDOW {
            self.buckets[(at % WINDOW) as usize].push_back((key, item));
            self.near += 1;
        } else {
            self.far.push(Far { at, key, item });
        }
    }

    /// The next event due before `until`, in (time, key) order, with its time and key. The
    /// clock never moves to `until` or beyond, so events may still be pushed at `until`.
    pub fn pop_before(&mut self, until: u64) -> Option<(u64, u64, T)> {
        if !self.settle(until) {
            return None;
        }
        let bucket = &mut self.buckets[(self.base % WINDOW) as usize];
        if !self.sorted {
            bucket
                .make_contiguous()
                .sort_unstable_by_key(|(key, _)| *key);
            self.sorted = true;
        }
        self.near -= 1;
        let (key, item) = bucket.pop_front().expect("settled on a non-empty bucket");
        if bucket.is_empty() && bucket.capacity() > KEEP {
            // A burst (a fleet starting, a release) would otherwise leave every bucket it
            // passed through holding its peak size: 100,000 nodes, hundreds of MB.
            *bucket = VecDeque::new();
        }
        Some((self.base, key, item))
    }

    /// The `k`th event in the current bucket (0: the next one, once sorted): a hint for the
    /// caller to prefetch what it will touch; None says nothing.
    pub fn peek_near(&self, k: usize) -> Option<&T> {
        self.buckets[(self.base % WINDOW) as usize]
            .get(k)
            .map(|(_, t)| t)
    }

    /// Move `base` to the first non-empty bucket before `until` (true), or no further than
    /// `until` (false), bringing far events into the window as it moves.
    fn settle(&mut self, until: u64) -> bool {
        loop {
            if self.base >= until {
                return false;
            }
            if !self.buckets[(self.base % WINDOW) as usize].is_empty() {
                return true;
            }
            self.base = if self.near == 0 {
                // Nothing in the window: jump towards the first far event.
                match self.far.peek() {
                    Some(f) => f.at.min(until),
                    None => return false,
                }
            } else {
                self.base + 1
            };
            self.sorted = false;
            // Far events now inside the window enter their buckets (sorted at their turn).
            let end = self.base + WINDOW;
            while self.far.peek().is_some_and(|f| f.at < end) {
                let f = self.far.pop().expect("peeked");
                self.buckets[(f.at % WINDOW) as usize].push_back((f.key, f.item));
                self.near += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    /// The same pops as a binary heap keyed by (time, key), over times near and far, popped
    /// in windows of any length.
    #[test]
    fn pops_in_time_then_key_order_like_a_heap() {
        let mut q = Queue::new();
        let mut heap = BinaryHeap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut now = 0u64;
        let mut until = 0u64;
        for _ in 0..200_000 {
            if rand() % 3 != 0 || heap.is_empty() {
                // Pushes land at the window's end or later (as the engine's cross-shard
                // messages do), or at the clock for the current one.
                let d = match rand() % 10 {
                    0 => rand() % 100_000,
                    1 => 0,
                    _ => rand() % 60,
                };
                let at = (now + d).max(until);
                let key = rand();
                q.push(at, key, key);
                heap.push(std::cmp::Reverse((at, key)));
            } else {
                let std::cmp::Reverse((at, key)) = *heap.peek().unwrap();
                if at >= until {
                    assert!(q.pop_before(until).is_none());
                    until = at + rand() % 20 + 1;
                    continue;
                }
                heap.pop();
                assert_eq!(q.pop_before(until), Some((at, key, key)));
                now = at;
            }
            assert_eq!(q.len(), heap.len());
        }
        while let Some(std::cmp::Reverse((at, key))) = heap.pop() {
            assert_eq!(q.pop_before(u64::MAX), Some((at, key, key)));
        }
        assert!(q.pop_before(u64::MAX).is_none());
    }
}
