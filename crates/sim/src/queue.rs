//! The event queue: a calendar of one bucket per virtual millisecond over a window ahead of
//! the clock, and a binary heap for events beyond it.
//!
//! Nearly every event is due within a second (message latencies are tens of milliseconds,
//! rounds are one second), so a push is an append to its millisecond's bucket and a pop takes
//! the front of the current one: O(1), where the heap of ~10^4–10^5 events paid a
//! cache-missing sift per pop. The order is exactly the heap's, (time, push order): a bucket
//! holds one millisecond, appended in push order, and events from the far heap enter their
//! bucket (in order) as soon as it comes into the window, before anything can be pushed to it
//! directly.

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
    /// Events in the buckets.
    near: usize,
    far: BinaryHeap<Far<T>>,
    seq: u64,
}

struct Far<T> {
    at: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
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
        (o.at, o.seq).cmp(&(self.at, self.seq)) // min-heap
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
            near: 0,
            far: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.near + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue `item` at `at`. An event in the past is due at once (after those already due).
    pub fn push(&mut self, at: u64, item: T) {
        let at = at.max(self.base);
        if at < self.base + WINDOW {
            self.buckets[(at % WINDOW) as usize].push_back((at, item));
            self.near += 1;
        } else {
            self.seq += 1;
            self.far.push(Far {
                at,
                seq: self.seq,
                item,
            });
        }
    }

    /// The time of the next event.
    pub fn next_at(&mut self) -> Option<u64> {
        self.settle()?;
        self.buckets[(self.base % WINDOW) as usize]
            .front()
            .map(|(at, _)| *at)
    }

    /// The next event in (time, push order), with its time.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.settle()?;
        self.near -= 1;
        let bucket = &mut self.buckets[(self.base % WINDOW) as usize];
        let e = bucket.pop_front();
        if bucket.is_empty() && bucket.capacity() > KEEP {
            // A burst (a fleet starting, a release) would otherwise leave every bucket it
            // passed through holding its peak size: 100,000 nodes, hundreds of MB.
            *bucket = VecDeque::new();
        }
        e
    }

    /// The `k`th event that [`Queue::pop`] would return next (0: the next one) if it is in
    /// the current bucket: a hint for the caller to prefetch what it will touch; None says
    /// nothing.
    pub fn peek_near(&self, k: usize) -> Option<&T> {
        self.buckets[(self.base % WINDOW) as usize]
            .get(k)
            .map(|(_, t)| t)
    }

    /// Move `base` to the first non-empty bucket, bringing far events into the window as it
    /// moves. None when nothing is queued.
    fn settle(&mut self) -> Option<()> {
        loop {
            if !self.buckets[(self.base % WINDOW) as usize].is_empty() {
                return Some(());
            }
            if self.near == 0 {
                // Nothing in the window: jump to the first far event.
                let first = self.far.peek()?.at;
                self.base = first;
            } else {
                self.base += 1;
            }
            // Far events now inside the window enter their buckets, in (time, seq) order and
            // before any direct push to those buckets (which needs the window to reach them).
            let end = self.base + WINDOW;
            while self.far.peek().is_some_and(|f| f.at < end) {
                let f = self.far.pop().expect("peeked");
                self.buckets[(f.at % WINDOW) as usize].push_back((f.at, f.item));
                self.near += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    /// The same pops as a binary heap keyed by (time, push order), over times near and far.
    #[test]
    fn pops_in_time_then_push_order_like_a_heap() {
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
        let mut seq = 0u64;
        for _ in 0..200_000 {
            if rand() % 3 != 0 || heap.is_empty() {
                let d = match rand() % 10 {
                    0 => rand() % 100_000,
                    1 => 0,
                    _ => rand() % 60,
                };
                seq += 1;
                q.push(now + d, seq);
                heap.push(std::cmp::Reverse((now + d, seq)));
            } else {
                let std::cmp::Reverse((at, s)) = heap.pop().unwrap();
                assert_eq!(q.next_at(), Some(at));
                assert_eq!(q.pop(), Some((at, s)));
                now = at;
            }
            assert_eq!(q.len(), heap.len());
        }
        while let Some(std::cmp::Reverse(e)) = heap.pop() {
            assert_eq!(q.pop(), Some(e));
        }
        assert!(q.pop().is_none());
    }
}
