//! Test-only failpoints: named spots in the storage code where a test runs its own code, to
//! kill the process there, pause a writer, or make the step fail.
//!
//! A hook belongs to the thread that set it, so unit tests running side by side in one
//! process never trip each other's. Outside `cfg(test)`, [`hit`] is an empty inline function.

#[cfg(test)]
type Hook = Box<dyn FnMut(&str) -> std::io::Result<()>>;

#[cfg(test)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Runs `hook` at every failpoint this thread passes, until [`clear`]. An `Err` it returns
/// becomes the failure of the step at that point.
#[cfg(test)]
pub(crate) fn set(hook: impl FnMut(&str) -> std::io::Result<()> + 'static) {
    HOOK.with_borrow_mut(|h| *h = Some(Box::new(hook)));
}

/// Removes this thread's hook.
#[cfg(test)]
pub(crate) fn clear() {
    HOOK.with_borrow_mut(|h| *h = None);
}

/// The failpoint `point`: runs this thread's hook, if any.
#[cfg(test)]
pub(crate) fn hit(point: &str) -> std::io::Result<()> {
    HOOK.with_borrow_mut(|h| match h {
        Some(hook) => hook(point),
        None => Ok(()),
    })
}

/// The failpoint `point`: nothing outside tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn hit(_point: &str) -> std::io::Result<()> {
    Ok(())
}
