//! Test-only failpoints: named spots in the storage code where a test runs its own code, to
//! kill the process there, pause a writer, or make the step fail.
//!
//! A hook belongs to the thread that set it, so unit tests running side by side in one
//! process never trip each other's. Outside `cfg(test)`, [`hit`] is an empty inline function.

#[cfg(test)]
type Hook = Box<dyn FnMut(&str) -> std::io::Result<()> + Send>;

#[cfg(test)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Runs `hook` at every failpoint this thread passes, until [`clear`]. An `Err` it returns
/// becomes the failure of the step at that point.
#[cfg(test)]
pub(crate) fn set(hook: impl FnMut(&str) -> std::io::Result<()> + Send + 'static) {
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

/// This thread's hook, taken away to run in a thread that does this thread's work for it
/// (`spawn_blocking`), where [`Carried::adopt`] sets it until the guard drops or gives it back.
#[cfg(test)]
pub(crate) struct Carried(Option<Hook>);

/// Takes this thread's hook away, to be [`Carried::adopt`]ed by another thread.
#[cfg(test)]
pub(crate) fn carry() -> Carried {
    Carried(HOOK.with_borrow_mut(|h| h.take()))
}

#[cfg(test)]
impl Carried {
    /// Sets the carried hook for this thread until the returned guard drops: a pooled thread
    /// must not keep a test's hook for the next task it runs.
    pub(crate) fn adopt(self) -> Adopted {
        self.restore();
        Adopted
    }

    /// Sets the carried hook for this thread, back where [`carry`] took it.
    pub(crate) fn restore(self) {
        HOOK.with_borrow_mut(|h| *h = self.0);
    }
}

#[cfg(test)]
impl Adopted {
    /// Takes the adopted hook away again, to be [`Carried::restore`]d by the thread it came
    /// from.
    pub(crate) fn give_back(self) -> Carried {
        carry()
    }
}

/// Clears the adopted hook when dropped (in tests).
pub(crate) struct Adopted;

#[cfg(test)]
impl Drop for Adopted {
    fn drop(&mut self) {
        clear();
    }
}

/// Nothing to carry outside tests.
#[cfg(not(test))]
pub(crate) struct Carried;

/// Nothing to carry outside tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn carry() -> Carried {
    Carried
}

#[cfg(not(test))]
impl Carried {
    /// Nothing to adopt outside tests.
    #[inline(always)]
    pub(crate) fn adopt(self) -> Adopted {
        Adopted
    }

    /// Nothing to restore outside tests.
    #[inline(always)]
    pub(crate) fn restore(self) {}
}

#[cfg(not(test))]
impl Adopted {
    /// Nothing to give back outside tests.
    #[inline(always)]
    pub(crate) fn give_back(self) -> Carried {
        Carried
    }
}

/// The failpoint `point`: nothing outside tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn hit(_point: &str) -> std::io::Result<()> {
    Ok(())
}
