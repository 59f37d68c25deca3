//! A pool of slot ids `0..capacity`: freed ids are reused lowest first, so slots stay dense.
use std::collections::BTreeSet;

#[derive(Debug)]
pub(super) struct Ids {
    capacity: u32,
    /// Every id below this was handed out at some point...
    next: u32,
    /// ...and these of them are free again.
    free: BTreeSet<u32>,
}

impl Ids {
    pub(super) fn new(capacity: u32) -> Self {
        Ids {
            capacity,
            next: 0,
            free: BTreeSet::new(),
        }
    }

    /// The lowest free id, now in use; None when all are.
    pub(super) fn take(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Records `id` as in use (rebuilding the pool from the maps).
    pub(super) fn mark_used(&mut self, id: u32) {
        if id >= self.capacity {
            return;
        }
        if id >= self.next {
            self.free.extend(self.next..id);
            self.next = id + 1;
        } else {
            self.free.remove(&id);
        }
    }

    pub(super) fn is_used(&self, id: u32) -> bool {
        id < self.next && !self.free.contains(&id)
    }

    pub(super) fn give_back(&mut self, id: u32) {
        if id < self.next {
            self.free.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn lowest_free_first_and_bounded() {
        let mut ids = Ids::new(3);
        assert_eq!((ids.take(), ids.take()), (Some(0), Some(1)));
        ids.give_back(0);
        assert_eq!(ids.take(), Some(0));
        assert_eq!(ids.take(), Some(2));
        assert_eq!(ids.take(), None);
        ids.mark_used(7);
        assert!(!ids.is_used(7), "beyond capacity is ignored");
    }

    #[test]
    fn rebuilt_pool_hands_out_the_gaps() {
        let mut ids = Ids::new(10);
        ids.mark_used(3);
        ids.mark_used(1);
        assert!(ids.is_used(1) && ids.is_used(3) && !ids.is_used(2));
        assert_eq!(ids.take(), Some(0));
        assert_eq!(ids.take(), Some(2));
        assert_eq!(ids.take(), Some(4));
    }
}
