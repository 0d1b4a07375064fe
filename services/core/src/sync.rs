//! Locks on state that every tenant's requests share (caches, breakers, limiter state).
//!
//! A panic while such a lock is held poisons it; `lock().expect(..)` would then turn one
//! tenant's bad input into a panic on every later request of every tenant. These helpers take the
//! lock whatever happened before: the data behind them is a cache or a counter that stays
//! consistent after a panic elsewhere (every writer updates it in one step), and code holding them
//! does no work that can panic on tenant-supplied values.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that recovers from poisoning instead of panicking.
pub trait MutexExt<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that recover from poisoning instead of panicking.
pub trait RwLockExt<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_serves() {
        let shared = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(2));
        let (s, r) = (shared.clone(), rw.clone());
        let panicked = std::thread::spawn(move || {
            let _a = s.lock().unwrap();
            let _b = r.write().unwrap();
            panic!("a request panicked while holding the locks");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned() && rw.is_poisoned());
        *shared.lock_or_recover() += 1;
        assert_eq!(*shared.lock_or_recover(), 2);
        *rw.write_or_recover() += 1;
        assert_eq!(*rw.read_or_recover(), 3);
    }
}
