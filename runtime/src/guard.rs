//! The per-thread "inside the library" flag. A copy made while the flag is
//! set (by the library's own code, or by a signal handler that interrupted a
//! copy on this thread) must not re-enter the engines: it is done by libc.
//!
//! The thread-local is `const`-initialised and has no destructor, so it
//! costs no registration (which would call calloc) and stays usable while a
//! thread is being torn down.

use core::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread entered the library; leaving happens on drop.
#[derive(Debug)]
pub struct Inside(());

impl Inside {
    /// Enters, or `None` if this thread is already inside.
    pub fn enter() -> Option<Inside> {
        INSIDE
            .try_with(|inside| {
                if inside.get() {
                    None
                } else {
                    inside.set(true);
                    Some(Inside(()))
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_entry_is_refused_until_the_first_leaves() {
        let outer = Inside::enter().expect("first entry");
        assert!(Inside::enter().is_none());
        drop(outer);
        assert!(Inside::enter().is_some());
    }

    #[test]
    fn threads_are_independent() {
        let _outer = Inside::enter().unwrap();
        std::thread::spawn(|| assert!(Inside::enter().is_some())).join().unwrap();
    }
}
