//! The id source: the part of a new cycle id nobody can derive from what it names.

/// Gives the unguessable suffix of each new cycle id.
pub trait IdSource: Send + Sync {
    /// The next 32-bit suffix.
    fn suffix(&self) -> u32;
}

impl<T: IdSource + ?Sized> IdSource for &T {
    fn suffix(&self) -> u32 {
        (**self).suffix()
    }
}

impl<T: IdSource + ?Sized> IdSource for std::sync::Arc<T> {
    fn suffix(&self) -> u32 {
        (**self).suffix()
    }
}
